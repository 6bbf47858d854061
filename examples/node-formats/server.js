// Login apps for the session formats authz reads besides express-session
// (docs/formats.md), one per FORMAT:
//
//   client-sessions   Express + client-sessions 0.8: the whole session,
//                     encrypted and signed, in the cookie "session"
//   cookie-session    Express + cookie-session 2.x: base64 JSON in "session",
//                     its keygrip signature in "session.sig"
//   fastify-session   Fastify + @fastify/session 11.x, the session in Redis
//                     through connect-redis (prefix "sess:"), cookie "sessionId"
//
// Each keeps req.session.username (authz: --user-path username) and roles.
// The two formats whose cookie carries the session also copy the user's
// current revision from Redis at sign-in (authz: --revision-path rev): the
// one line such a login app needs so that `authz logout --user` can end
// every cookie of the user.
//
// Nginx routes every path starting with /login here unchanged:
//
//   GET  /login          who this session is (JSON)
//   POST /login          sign in (username, password "demo"), 303 to /
//   POST /login/touch    change the session, so the library re-issues the
//                        cookie (client-sessions: a new IV, the same revision)
//   POST /login/logout   the library's own sign-out: client-sessions'
//                        reset(), cookie-session's `= null`, @fastify/session's
//                        destroy() (a DEL, which authz sees through tracking)
//
// Environment:
//
//   FORMAT           one of the three above (required)
//   PORT, HOST       where to listen (3000, 127.0.0.1)
//   REDIS_URL        redis://host:port/db (redis://127.0.0.1:6379/0)
//   SESSION_SECRET   required; comma-separated keys for cookie-session (the
//                    first signs); @fastify/session wants 32+ characters
//   DURATION_MS      client-sessions' duration, @fastify/session's cookie
//                    maxAge (86400000)
//   REVISION_PREFIX  where authz keeps revisions (authz:rev:)
//   TENANT           the tenant name in the revision key, if any
'use strict';

const crypto = require('node:crypto');
const { createClient } = require('redis');

const config = {
  format: process.env.FORMAT,
  host: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT || 3000),
  redisURL: process.env.REDIS_URL || 'redis://127.0.0.1:6379/0',
  secrets: (process.env.SESSION_SECRET || '').split(',').filter(Boolean),
  duration: Number(process.env.DURATION_MS || 86400000),
  revisionPrefix: process.env.REVISION_PREFIX || 'authz:rev:',
  tenant: process.env.TENANT || '',
};
if (config.secrets.length === 0) throw new Error('SESSION_SECRET is required');

// DEMO ONLY: a real app has its users in a database.
const users = new Map([
  ['alice', { roles: ['admin'] }],
  ['bob', { roles: ['staff'] }],
]);

function checkPassword(username, password) {
  const sha = (s) => crypto.createHash('sha256').update(String(s)).digest();
  return users.has(username) && crypto.timingSafeEqual(sha(password), sha('demo'));
}

// The user's current revision, copied into the session at sign-in: a
// cookie signed in before `authz logout --user` moved it on is refused.
async function currentRevision(redis, username) {
  const key = config.revisionPrefix + (config.tenant ? `${config.tenant}:` : '') + username;
  return Number(await redis.get(key)) || 0;
}

async function main() {
  const redis = createClient({ url: config.redisURL });
  redis.on('error', (err) => console.error('redis:', err.message));
  await redis.connect();
  switch (config.format) {
    case 'client-sessions':
    case 'cookie-session':
      return express(redis);
    case 'fastify-session':
      return fastify(redis);
  }
  throw new Error(`FORMAT ${JSON.stringify(config.format)}: want client-sessions, cookie-session or fastify-session`);
}

function express(redis) {
  const app = require('express')();
  app.set('trust proxy', 'loopback');
  app.use(require('express').urlencoded({ extended: false }));
  if (config.format === 'client-sessions') {
    app.use(require('client-sessions')({
      cookieName: 'session', // req.session
      secret: config.secrets[0],
      duration: config.duration,
      activeDuration: Math.min(5 * 60 * 1000, config.duration / 2),
      cookie: { httpOnly: true, sameSite: 'lax' },
    }));
  } else {
    app.use(require('cookie-session')({
      name: 'session',
      keys: config.secrets,
      httpOnly: true,
      sameSite: 'lax',
    }));
  }
  app.get('/login', (req, res) => {
    res.json({ user: (req.session && req.session.username) || null });
  });
  app.post('/login', async (req, res, next) => {
    try {
      const { username, password } = req.body || {};
      if (!checkPassword(username, password)) return res.status(401).json({ error: 'bad credentials' });
      req.session.username = username;
      req.session.roles = users.get(username).roles;
      // cookie-session adds no nonce: two sign-ins with the same content
      // would be the very same cookie, and a logout of one (a deny entry
      // for its hash) the logout of both.
      req.session.nonce = crypto.randomBytes(12).toString('base64url');
      req.session.rev = await currentRevision(redis, username);
      res.redirect(303, '/');
    } catch (err) {
      next(err);
    }
  });
  app.post('/login/touch', (req, res) => {
    if (req.session) req.session.seen = Date.now();
    res.json({ user: (req.session && req.session.username) || null });
  });
  app.post('/login/logout', (req, res) => {
    if (config.format === 'client-sessions') req.session.reset();
    else req.session = null;
    res.redirect(303, '/login');
  });
  app.listen(config.port, config.host, () => console.log(`${config.format} login app on http://${config.host}:${config.port}`));
}

async function fastify(redis) {
  const { RedisStore } = require('connect-redis');
  const app = require('fastify')({ trustProxy: '127.0.0.1' });
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body)));
  });
  app.register(require('@fastify/cookie'));
  app.register(require('@fastify/session'), {
    secret: config.secrets,
    store: new RedisStore({ client: redis, prefix: 'sess:' }),
    cookie: { maxAge: config.duration, httpOnly: true, sameSite: 'lax', secure: false },
    saveUninitialized: false,
  });
  app.get('/login', async (req) => ({ user: req.session.get('username') || null }));
  app.post('/login', async (req, reply) => {
    const { username, password } = req.body || {};
    if (!checkPassword(username, password)) return reply.code(401).send({ error: 'bad credentials' });
    await req.session.regenerate();
    req.session.set('username', username);
    req.session.set('roles', users.get(username).roles);
    return reply.redirect('/', 303);
  });
  app.post('/login/touch', async (req) => {
    req.session.set('seen', Date.now());
    return { user: req.session.get('username') || null };
  });
  app.post('/login/logout', async (req, reply) => {
    await req.session.destroy();
    return reply.redirect('/login', 303);
  });
  await app.listen({ port: config.port, host: config.host });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
