// The login service of the authz demo, written the way Express apps already
// do it: express-session with connect-redis, passport with passport-local.
// Nothing here knows about authz. authz reads the session this app writes
// (the signed connect.sid cookie, the JSON under sess:<id>); the only line
// added for single sign-off is the PUBLISH in the logout route.
//
// Nginx routes every path starting with /login here unchanged, so every
// route lives under /login:
//
//   GET  /login          the sign-in form, or who you are when signed in
//   POST /login          sign in, then 303 to ?rd= if it is a local path
//   GET  /login/count    counts requests in the session (req.session.count++)
//   POST /login/logout   destroys the session and tells authz (docs/logout.md)
//
// Demo users: alice (roles admin) and bob (roles staff), password "demo".
//
// Environment:
//
//   PORT             port to listen on (3000), on HOST (127.0.0.1)
//   REDIS_URL        redis://[:password@]host:port/db (redis://127.0.0.1:6379/0)
//   SESSION_SECRET   required; comma-separated: the first signs new cookies,
//                    all verify (rotation: "new,old")
//   SESSION_PREFIX   connect-redis prefix (sess:)
//   LOGOUT_CHANNEL   authz's --logout-channel (authz:logout)
//   TRUST_PROXY      Express "trust proxy": who may set X-Forwarded-Proto (loopback)
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
  prefix: process.env.SESSION_PREFIX ?? 'sess:',
  logoutChannel: process.env.LOGOUT_CHANNEL || 'authz:logout',
  trustProxy: process.env.TRUST_PROXY || 'loopback',
};

// DEMO ONLY: a real app looks users up in its database and stores password
// hashes. What serializeUser keeps in the session is what authz reads:
// passport.user.id is X-Auth-User, passport.user.roles feeds allow_roles.
const users = new Map([
  ['alice', { id: 'alice', email: 'alice@example.com', roles: ['admin'] }],
  ['bob', { id: 'bob', email: 'bob@example.com', roles: ['staff'] }],
]);
const demoPassword = 'demo';

passport.use(new LocalStrategy((username, password, done) => {
  const user = users.get(username);
  // Compare digests so the time taken does not depend on the password.
  const ok = crypto.timingSafeEqual(sha256(password), sha256(demoPassword));
  done(null, user && ok ? user : false);
}));
passport.serializeUser((user, done) => done(null, { id: user.id, email: user.email, roles: user.roles }));
passport.deserializeUser((stored, done) => done(null, stored));

function sha256(s) {
  return crypto.createHash('sha256').update(String(s)).digest();
}

function buildApp(redis) {
  const app = express();
  app.disable('x-powered-by');
  // Nginx in front sets X-Forwarded-Proto; trusting it lets cookie.secure
  // 'auto' mark the cookie Secure exactly when the site is served over HTTPS.
  app.set('trust proxy', config.trustProxy);

  app.use(session({
    name: 'connect.sid',
    // An array: express-session signs with the first and accepts all, so a
    // new secret can go first while cookies signed with the old one live on.
    secret: config.secrets,
    store: new RedisStore({ client: redis, prefix: config.prefix }),
    resave: false,
    saveUninitialized: false,
    cookie: { path: '/', maxAge: 60 * 60 * 1000, httpOnly: true, sameSite: 'lax', secure: 'auto' },
  }));
  app.use(passport.session());
  app.use(express.urlencoded({ extended: false, limit: '4kb' }));
  app.use((req, res, next) => {
    res.set('Cache-Control', 'no-store');
    next();
  });

  app.get('/login', (req, res) => {
    const rd = localPath(req.query.rd) ? req.query.rd : '';
    if (req.user) {
      res.type('html').send(signedInPage(req.user, req.session.count ?? 0, rd));
      return;
    }
    res.type('html').send(loginPage({ rd }));
  });

  app.post('/login', sameSite, (req, res, next) => {
    // Express 5 leaves req.body undefined when there is no form body.
    const body = req.body ?? {};
    const rd = localPath(body.rd) ? body.rd : '/';
    passport.authenticate('local', (err, user) => {
      if (err) return next(err);
      if (!user) {
        const username = typeof body.username === 'string' ? body.username : '';
        res.status(401).type('html').send(loginPage({ rd, username, error: 'Wrong name or password.' }));
        return;
      }
      // passport regenerates the session (a new id, against session
      // fixation) and saves it before calling back, so the session is in
      // Redis before the browser follows the redirect.
      req.login(user, (err) => {
        if (err) return next(err);
        console.log(`express-login: signed in ${user.id}`);
        res.redirect(303, rd);
      });
    })(req, res, next);
  });

  // Changes the session, as app code does all the time: express-session
  // writes it back to Redis after the response, and authz sees the change.
  app.get('/login/count', (req, res) => {
    if (!req.user) {
      res.status(401).json({ error: 'not signed in' });
      return;
    }
    req.session.count = (req.session.count ?? 0) + 1;
    res.json({ user: req.user.id, count: req.session.count });
  });

  app.post('/login/logout', sameSite, (req, res, next) => {
    res.clearCookie('connect.sid', { path: '/', httpOnly: true, sameSite: 'lax' });
    if (!req.user) {
      // Nothing stored to end: logging out twice is not an error.
      res.redirect(303, '/login');
      return;
    }
    // destroy() replaces req.session, so keep the id for the event.
    const sid = req.sessionID;
    const user = req.user.id;
    req.session.destroy(async (err) => {
      if (err) return next(err);
      // destroy() DELeted the session in Redis. The event makes every authz
      // instance drop its cached copy now rather than within its cache TTL.
      try {
        await redis.publish(config.logoutChannel, JSON.stringify({
          v: 1, kind: 'session', session: sid, time: new Date().toISOString(), origin: 'express-login',
        }));
      } catch (err) {
        // The session is gone from Redis already; authz still drops it
        // through tracking or, at worst, when its cache entry ends.
        console.error(`express-login: publish logout: ${err.message}`);
      }
      console.log(`express-login: signed out ${user}`);
      res.redirect(303, '/login');
    });
  });

  app.use((req, res) => {
    res.status(404).type('text').send('not found\n');
  });
  // Express's default handler shows stack traces outside production.
  // A client's mistake (a body too large, bad encoding) gets its 4xx and no
  // stack trace in the log.
  app.use((err, req, res, next) => {
    const status = err.status >= 400 && err.status < 500 ? err.status : 500;
    console.error(`express-login: ${req.method} ${req.path}: ${status === 500 ? err.stack || err : err.message}`);
    if (res.headersSent) return next(err);
    res.status(status).type('text').send(status === 500 ? 'something went wrong\n' : `${err.message}\n`);
  });
  return app;
}

// sameSite refuses a POST another site made the browser send. SameSite=Lax
// already keeps the session cookie off such a POST; this also stops another
// site from signing a visitor in under an account of its choosing.
function sameSite(req, res, next) {
  if (req.get('Sec-Fetch-Site') === 'cross-site') {
    res.status(403).type('text').send('cross-site request refused\n');
    return;
  }
  const origin = req.get('Origin');
  if (origin !== undefined) {
    // Nginx passes $host, which has no port; compare host names only. An
    // Origin of "null" (a sandboxed or privacy-sensitive context) has none.
    const host = hostname(origin);
    if (host === '' || host !== hostname(`http://${req.get('Host')}`)) {
      res.status(403).type('text').send('cross-site request refused\n');
      return;
    }
  }
  next();
}

// hostname is the lower-case host name of url, or '' if it has none.
function hostname(url) {
  try {
    return new URL(url).hostname.toLowerCase();
  } catch {
    return '';
  }
}

// localPath reports whether rd stays on this site: a path, not "//host" or
// "/\host" (browsers read both as another host), with no whitespace or
// control characters, which browsers strip ("/\t/host" is "//host" to them).
function localPath(rd) {
  return typeof rd === 'string' && rd.startsWith('/') && !rd.startsWith('//') &&
    !rd.startsWith('/\\') && !/[\x00-\x20\x7f]/.test(rd);
}

function escapeHTML(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const style = 'body{font-family:sans-serif;margin:2em}label{display:block;margin:.5em 0}';

function loginPage({ rd, username = '', error = '' }) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in</title><style>${style}</style></head><body>
<h1>Sign in</h1>
<p>Demo users: <code>alice</code> (admin) and <code>bob</code> (staff), password <code>demo</code>.</p>
${error ? `<p style="color:#b00">${escapeHTML(error)}</p>` : ''}
<form method="post" action="/login">
<input type="hidden" name="rd" value="${escapeHTML(rd)}">
<label>Name <input name="username" value="${escapeHTML(username)}" autocomplete="username" autofocus required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button>Sign in</button>
</form>
</body></html>
`;
}

function signedInPage(user, count, rd) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Signed in</title><style>${style}</style></head><body>
<h1>Signed in as ${escapeHTML(user.id)}</h1>
<p>Roles: ${escapeHTML(user.roles.join(', '))}. Session counter: ${escapeHTML(count)}
(<a href="/login/count">count one more</a>).</p>
<p><a href="${escapeHTML(rd || '/')}">Continue to ${escapeHTML(rd || '/')}</a></p>
<form method="post" action="/login/logout"><button>Sign out</button> (this Express app ends the session and tells authz)</form>
</body></html>
`;
}

async function main() {
  if (config.secrets.length === 0) {
    throw new Error('SESSION_SECRET is required (comma-separated; the first signs, all verify)');
  }
  if (!Number.isInteger(config.port) || config.port <= 0 || config.port > 65535) {
    throw new Error(`PORT ${process.env.PORT} is not a port`);
  }
  // Without the offline queue a request fails at once while Redis is away
  // instead of hanging until it is back.
  const redis = createClient({ url: config.redisURL, disableOfflineQueue: true });
  redis.on('error', (err) => console.error(`express-login: redis: ${err.message}`));
  await redis.connect();

  const server = buildApp(redis).listen(config.port, config.host, () => {
    console.log(`express-login: listening on ${config.host}:${config.port}`);
  });
  server.on('error', (err) => {
    console.error(`express-login: ${err.message}`);
    process.exit(1);
  });

  const stop = () => {
    // Stop accepting, let requests in flight finish, then leave; Nginx's
    // idle keep-alive connections would hold close() open, so end those.
    server.close(() => redis.close().finally(() => process.exit(0)));
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err) => {
  console.error(`express-login: ${err.message}`);
  process.exit(1);
});
