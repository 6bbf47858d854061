// The multi-tenant Express shape authz serves with a tenant file whose
// tenants share one secret and one cookie name (docs/tenants.md): one
// express-session + connect-redis middleware per customer, picked by host
// name, the same `secret` and `name` for all, a key prefix each, with
// `resave: true` and `saveUninitialized: true`. Nothing here knows about
// authz.
//
// Sign-in stands in for an OAuth login: passport keeps the user and the
// access token the provider issued in the session (passport.user.accessToken),
// where authz's --access-token-path finds it to relay to services. The
// token never goes to the browser.
//
// Nginx routes every path starting with /login here unchanged:
//
//   GET  /login          who this session is (JSON); creates an anonymous
//                        session (saveUninitialized)
//   POST /login          sign in (username, password "demo"), 303 to /
//   POST /login/logout   req.session.destroy(): Express's own logout, no
//                        event sent to authz (it sees the key go)
//
// Users, in every tenant: alice (admin) and bob (staff) sign in "through
// OAuth" and get an access token; carol signs in with a password only and
// has none.
//
// Environment:
//
//   PORT             port to listen on (3000), on HOST (127.0.0.1)
//   REDIS_URL        redis://[:password@]host:port/db (redis://127.0.0.1:6379/0)
//   SESSION_SECRET   required; one secret for every tenant (comma-separated
//                    for rotation: the first signs, all verify)
//   TENANTS          required; host=prefix pairs, comma-separated, e.g.
//                    acme.test=sessions:acme:web:,globex.test=sessions:globex:web:
//   TRUST_PROXY      Express "trust proxy" (loopback)
'use strict';

const crypto = require('node:crypto');
const express = require('express');
const session = require('express-session');
const { RedisStore } = require('connect-redis');
const { createClient } = require('redis');
const passport = require('passport');
const LocalStrategy = require('passport-local').Strategy;

const config = {
  host: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT || 3000),
  redisURL: process.env.REDIS_URL || 'redis://127.0.0.1:6379/0',
  secrets: (process.env.SESSION_SECRET || '').split(',').filter(Boolean),
  tenants: (process.env.TENANTS || '').split(',').filter(Boolean).map((pair) => {
    const i = pair.indexOf('=');
    return { host: pair.slice(0, i).toLowerCase(), prefix: pair.slice(i + 1) };
  }),
  trustProxy: process.env.TRUST_PROXY || 'loopback',
};

// DEMO ONLY: a real app has its users in a database, per tenant.
const users = new Map([
  ['alice', { id: 'alice', roles: ['admin'], oauth: true }],
  ['bob', { id: 'bob', roles: ['staff'], oauth: true }],
  ['carol', { id: 'carol', roles: ['staff'], oauth: false }],
]);

passport.use(new LocalStrategy((username, password, done) => {
  const user = users.get(username);
  const ok = crypto.timingSafeEqual(sha256(password), sha256('demo'));
  done(null, user && ok ? user : false);
}));
// What an OAuth strategy's verify callback commonly keeps: the profile and
// the provider's access token. Here the "provider" makes up a token.
passport.serializeUser((user, done) => {
  const stored = { id: user.id, roles: user.roles };
  if (user.oauth) stored.accessToken = `at.${user.id}.${crypto.randomBytes(18).toString('base64url')}`;
  done(null, stored);
});
passport.deserializeUser((stored, done) => done(null, stored));

function sha256(s) {
  return crypto.createHash('sha256').update(String(s)).digest();
}

function buildApp(redis) {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', config.trustProxy);

  // One session middleware per tenant: the same secret and cookie name,
  // the tenant's own key prefix.
  const perTenant = new Map(config.tenants.map(({ host, prefix }) => [host, session({
    name: 'connect.sid',
    secret: config.secrets,
    store: new RedisStore({ client: redis, prefix }),
    resave: true,
    saveUninitialized: true,
    cookie: { path: '/', maxAge: 60 * 60 * 1000, httpOnly: true, sameSite: 'lax', secure: 'auto' },
  })]));
  app.use((req, res, next) => {
    const mw = perTenant.get(req.hostname);
    if (!mw) {
      res.status(404).type('text').send('no such tenant\n');
      return;
    }
    mw(req, res, next);
  });
  app.use(passport.session());
  app.use(express.urlencoded({ extended: false, limit: '4kb' }));
  app.use((req, res, next) => {
    res.set('Cache-Control', 'no-store');
    next();
  });

  app.get('/login', (req, res) => {
    // The id of the session, never its token.
    res.json({ tenant: req.hostname, user: req.user ? req.user.id : null });
  });

  app.post('/login', (req, res, next) => {
    passport.authenticate('local', (err, user) => {
      if (err) return next(err);
      if (!user) {
        res.status(401).json({ error: 'wrong name or password' });
        return;
      }
      req.login(user, (err) => {
        if (err) return next(err);
        res.redirect(303, '/');
      });
    })(req, res, next);
  });

  app.post('/login/logout', (req, res, next) => {
    res.clearCookie('connect.sid', { path: '/', httpOnly: true, sameSite: 'lax' });
    req.session.destroy((err) => {
      if (err) return next(err);
      res.redirect(303, '/login');
    });
  });

  app.use((req, res) => {
    res.status(404).type('text').send('not found\n');
  });
  app.use((err, req, res, next) => {
    console.error(`express-tenants: ${req.method} ${req.path}: ${err.message}`);
    if (res.headersSent) return next(err);
    res.status(500).type('text').send('something went wrong\n');
  });
  return app;
}

async function main() {
  if (config.secrets.length === 0) {
    throw new Error('SESSION_SECRET is required');
  }
  if (config.tenants.length === 0 || config.tenants.some((t) => !t.host || !t.prefix)) {
    throw new Error('TENANTS is required: host=prefix pairs, comma-separated');
  }
  const redis = createClient({ url: config.redisURL, disableOfflineQueue: true });
  redis.on('error', (err) => console.error(`express-tenants: redis: ${err.message}`));
  await redis.connect();
  const server = buildApp(redis).listen(config.port, config.host, () => {
    console.log(`express-tenants: listening on ${config.host}:${config.port}`);
  });
  server.on('error', (err) => {
    console.error(`express-tenants: ${err.message}`);
    process.exit(1);
  });
  const stop = () => {
    server.close(() => redis.close().finally(() => process.exit(0)));
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err) => {
  console.error(`express-tenants: ${err.message}`);
  process.exit(1);
});
