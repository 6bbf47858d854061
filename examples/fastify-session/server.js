// A Fastify login app with server-side sessions, set up as
// @fastify/session's README suggests: @fastify/cookie signs the session id
// into the `sessionId` cookie, connect-redis keeps the session in Redis under
// sess:<id>. authz reads both (--session-format fastify-session,
// docs/formats.md). Nothing here knows about authz but the logout event.
//
// Nginx routes every path starting with /login here unchanged, so every
// route lives under /login:
//
//   GET  /login          the sign-in form, or who you are when signed in
//   POST /login          sign in (username, password "demo"), then 303 to ?rd=
//                        if it is a local path
//   GET  /login/me       who the session says you are (JSON). Nginx does not
//                        protect it, so an old cookie reaches it too
//   POST /login/logout   destroys the session and tells authz (docs/logout.md)
//
// The session keeps the user as request.session.username and
// request.session.roles: authz --user-path username --roles-path roles.
//
// Demo users: alice (roles admin) and bob (roles staff), password "demo".
//
// Environment:
//
//   PORT             port to listen on (3000), on HOST (127.0.0.1)
//   REDIS_URL        redis://[:password@]host:port/db (redis://127.0.0.1:6379/0)
//   SESSION_SECRET   required; comma-separated: the first signs new cookies,
//                    all verify (rotation: "new,old"). One secret must have
//                    at least 32 characters (@fastify/session checks)
//   SESSION_MAX_AGE  ms a session lives without a request to this app
//                    (86400000: a day); authz refuses it once the stored
//                    cookie.expires has passed, as @fastify/session does
//   SESSION_PREFIX   connect-redis prefix (sess:); authz's --key-prefix
//   LOGOUT_CHANNEL   authz's --logout-channel (authz:logout)
//   TRUST_PROXY      Fastify trustProxy: who may set X-Forwarded-Proto (loopback)
'use strict';

const crypto = require('node:crypto');
const Fastify = require('fastify');
const fastifyCookie = require('@fastify/cookie');
const fastifyFormbody = require('@fastify/formbody');
const fastifySession = require('@fastify/session');
const { RedisStore } = require('connect-redis');
const { createClient } = require('redis');

const config = {
  host: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT || 3000),
  redisURL: process.env.REDIS_URL || 'redis://127.0.0.1:6379/0',
  secrets: (process.env.SESSION_SECRET || '').split(',').filter(Boolean),
  maxAge: Number(process.env.SESSION_MAX_AGE || 24 * 3600 * 1000),
  prefix: process.env.SESSION_PREFIX ?? 'sess:',
  logoutChannel: process.env.LOGOUT_CHANNEL || 'authz:logout',
  trustProxy: process.env.TRUST_PROXY || 'loopback',
};

// DEMO ONLY: a real app looks users up in its database and stores password
// hashes.
const users = new Map([
  ['alice', { username: 'alice', roles: ['admin'] }],
  ['bob', { username: 'bob', roles: ['staff'] }],
]);
const demoPassword = 'demo';

function sha256(s) {
  return crypto.createHash('sha256').update(String(s)).digest();
}

function buildApp(redis) {
  // Nginx in front sets X-Forwarded-Proto; trusting it lets secure: 'auto'
  // mark the cookie Secure exactly when the site is served over HTTPS.
  const app = Fastify({ trustProxy: config.trustProxy, bodyLimit: 4096 });
  app.register(fastifyCookie);
  app.register(fastifyFormbody);
  app.register(fastifySession, {
    cookieName: 'sessionId', // authz: --cookie-name sessionId (the default)
    // One secret is a string (the library wants 32+ characters); several
    // are a list, the first signing.
    secret: config.secrets.length === 1 ? config.secrets[0] : config.secrets,
    store: new RedisStore({ client: redis, prefix: config.prefix }),
    // No session in Redis, and no cookie, for visitors who never sign in.
    saveUninitialized: false,
    cookie: { path: '/', maxAge: config.maxAge, httpOnly: true, sameSite: 'lax', secure: 'auto' },
  });
  app.addHook('onSend', async (request, reply) => {
    reply.header('Cache-Control', 'no-store');
  });

  app.get('/login', async (request, reply) => {
    const rd = localPath(request.query.rd) ? request.query.rd : '';
    reply.type('text/html; charset=utf-8');
    if (request.session.username) {
      return signedInPage(request.session, rd);
    }
    return loginPage({ rd });
  });

  app.post('/login', { preHandler: sameSite }, async (request, reply) => {
    const body = request.body ?? {};
    const rd = localPath(body.rd) ? body.rd : '/';
    const user = users.get(body.username);
    // Compare digests so the time taken does not depend on the password.
    const ok = crypto.timingSafeEqual(sha256(body.password), sha256(demoPassword));
    if (!user || !ok) {
      const username = typeof body.username === 'string' ? body.username : '';
      reply.code(401).type('text/html; charset=utf-8');
      return loginPage({ rd, username, error: 'Wrong name or password.' });
    }
    // A new session id at sign-in, against session fixation; the old
    // session, if any, is deleted from Redis.
    await request.session.regenerate();
    request.session.username = user.username;
    request.session.roles = user.roles;
    // Saved before the answer, so the session is in Redis before the
    // browser follows the redirect.
    await request.session.save();
    console.log(`fastify-session: signed in ${user.username}`);
    return reply.redirect(rd, 303);
  });

  app.get('/login/me', async (request, reply) => {
    if (!request.session.username) {
      return reply.code(401).send({ error: 'not signed in' });
    }
    return { username: request.session.username, roles: request.session.roles };
  });

  app.post('/login/logout', { preHandler: sameSite }, async (request, reply) => {
    reply.clearCookie('sessionId', { path: '/' });
    const user = request.session.username;
    if (!user) {
      // Nothing stored to end: logging out twice is not an error.
      return reply.redirect('/login', 303);
    }
    const sid = request.session.sessionId;
    // destroy() DELetes the session in Redis.
    await request.session.destroy();
    // The event makes every authz instance drop its cached copy now
    // rather than within its cache TTL.
    try {
      await redis.publish(config.logoutChannel, JSON.stringify({
        v: 1, kind: 'session', session: sid, time: new Date().toISOString(), origin: 'fastify-session',
      }));
    } catch (err) {
      // The session is gone from Redis already; authz still drops it
      // through tracking or, at worst, when its cache entry ends.
      console.error(`fastify-session: publish logout: ${err.message}`);
    }
    console.log(`fastify-session: signed out ${user}`);
    return reply.redirect('/login', 303);
  });

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).type('text/plain').send('not found\n');
  });
  return app;
}

// sameSite refuses a POST another site made the browser send: another site
// must not sign a visitor in (or out) under an account of its choosing.
async function sameSite(request, reply) {
  if (request.headers['sec-fetch-site'] === 'cross-site') {
    return reply.code(403).type('text/plain').send('cross-site request refused\n');
  }
  const origin = request.headers.origin;
  if (origin !== undefined) {
    const host = hostname(origin);
    if (host === '' || host !== hostname(`http://${request.headers.host}`)) {
      return reply.code(403).type('text/plain').send('cross-site request refused\n');
    }
  }
}

function hostname(url) {
  try {
    return new URL(url).hostname.toLowerCase();
  } catch {
    return '';
  }
}

// localPath reports whether rd stays on this site (see examples/express-login).
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

function signedInPage(session, rd) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Signed in</title><style>${style}</style></head><body>
<h1>Signed in as ${escapeHTML(session.username)}</h1>
<p>Roles: ${escapeHTML((session.roles || []).join(', '))}.</p>
<p><a href="${escapeHTML(rd || '/')}">Continue to ${escapeHTML(rd || '/')}</a></p>
<form method="post" action="/login/logout"><button>Sign out</button> (this Fastify app ends the session and tells authz)</form>
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
  if (!Number.isSafeInteger(config.maxAge) || config.maxAge <= 0) {
    throw new Error(`SESSION_MAX_AGE ${process.env.SESSION_MAX_AGE} is not a number of milliseconds`);
  }
  // Without the offline queue a request fails at once while Redis is away
  // instead of hanging until it is back.
  const redis = createClient({ url: config.redisURL, disableOfflineQueue: true });
  redis.on('error', (err) => console.error(`fastify-session: redis: ${err.message}`));
  await redis.connect();

  const app = buildApp(redis);
  await app.listen({ host: config.host, port: config.port });
  console.log(`fastify-session: listening on ${config.host}:${config.port}`);

  const stop = () => {
    // close() stops accepting and waits for requests in flight.
    app.close().then(() => redis.close()).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 5000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err) => {
  console.error(`fastify-session: ${err.message}`);
  process.exit(1);
});
