// An Express login app whose whole session lives in the browser:
// cookie-session 2.x keeps it as base64 JSON in the `session` cookie and
// keygrip's signature of it in `session.sig`, with no store. authz reads the
// pair (--session-format cookie-session, docs/formats.md).
//
// The format carries no expiry, and a cookie cannot be deleted on the
// server, so the sign-off is a revision: at sign-in the app copies the
// user's current revision from Redis into the session (one line, marked
// below); `authz logout --user U` moves that revision on, and authz refuses
// every cookie that carries an older one, even one this app re-issues later.
//
// Nginx routes every path starting with /login here unchanged, so every
// route lives under /login:
//
//   GET  /login        the sign-in form, or who you are when signed in
//   POST /login        sign in (username, password "demo"), then 303 to ?rd=
//                      if it is a local path
//   GET  /login/me     who the session says you are (JSON)
//   GET  /login/count  counts requests in the session (req.session.count++),
//                      so cookie-session writes the cookie again. Nginx does
//                      not protect it, so an old cookie reaches it too
//
// Signing out is authz's own POST /logout (Nginx sends /logout there): it
// denies that one cookie on every instance and clears both cookies in the
// browser; POST /logout?everywhere=1 ends every session of the user.
// `req.session = null` alone would only clear the browser's copy.
//
// Demo users: alice (roles admin) and bob (roles staff), password "demo".
//
// Environment:
//
//   PORT             port to listen on (3000), on HOST (127.0.0.1)
//   REDIS_URL        redis://[:password@]host:port/db (redis://127.0.0.1:6379/0)
//   SESSION_KEYS     required; keygrip's keys, comma-separated: the first
//                    signs, all verify (authz: --session-secret, repeated in
//                    the same order)
//   SESSION_MAX_AGE  the browser cookie's maxAge in ms (86400000: a day); not
//                    a limit on the server: the cookie carries no expiry
//   REVISION_PREFIX  authz's --revision-prefix (authz:rev:)
//   TENANT           the tenant's name in authz's tenant file, if any: the
//                    revision key is then authz:rev:<tenant>:<user>
//   TRUST_PROXY      Express "trust proxy": who may set X-Forwarded-Proto (loopback)
'use strict';

const crypto = require('node:crypto');
const express = require('express');
const cookieSession = require('cookie-session');
const { createClient } = require('redis');

const config = {
  host: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT || 3000),
  redisURL: process.env.REDIS_URL || 'redis://127.0.0.1:6379/0',
  keys: (process.env.SESSION_KEYS || '').split(',').filter(Boolean),
  maxAge: Number(process.env.SESSION_MAX_AGE || 24 * 3600 * 1000),
  revisionPrefix: process.env.REVISION_PREFIX ?? 'authz:rev:',
  tenant: process.env.TENANT || '',
  trustProxy: process.env.TRUST_PROXY || 'loopback',
};

// DEMO ONLY: a real app looks users up in its database and stores password
// hashes. What the session holds is what authz reads: --user-path username,
// --roles-path roles, --revision-path rev.
const users = new Map([
  ['alice', { username: 'alice', roles: ['admin'] }],
  ['bob', { username: 'bob', roles: ['staff'] }],
]);
const demoPassword = 'demo';

function sha256(s) {
  return crypto.createHash('sha256').update(String(s)).digest();
}

// revisionKey is where authz keeps the user's current revision: what
// `authz logout --user` increments.
function revisionKey(username) {
  return config.revisionPrefix + (config.tenant ? `${config.tenant}:` : '') + username;
}

function buildApp(redis) {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', config.trustProxy);

  app.use(cookieSession({
    name: 'session', // authz: --cookie-name session (the default)
    keys: config.keys,
    maxAge: config.maxAge,
    path: '/',
    httpOnly: true,
    sameSite: 'lax',
  }));
  app.use(express.urlencoded({ extended: false, limit: '4kb' }));
  app.use((req, res, next) => {
    res.set('Cache-Control', 'no-store');
    next();
  });

  app.get('/login', (req, res) => {
    const rd = localPath(req.query.rd) ? req.query.rd : '';
    if (req.session.username) {
      res.type('html').send(signedInPage(req.session, rd));
      return;
    }
    res.type('html').send(loginPage({ rd }));
  });

  app.post('/login', sameSite, async (req, res, next) => {
    // Express 5 leaves req.body undefined when there is no form body.
    const body = req.body ?? {};
    const rd = localPath(body.rd) ? body.rd : '/';
    const user = users.get(body.username);
    // Compare digests so the time taken does not depend on the password.
    const ok = crypto.timingSafeEqual(sha256(body.password), sha256(demoPassword));
    if (!user || !ok) {
      const username = typeof body.username === 'string' ? body.username : '';
      res.status(401).type('html').send(loginPage({ rd, username, error: 'Wrong name or password.' }));
      return;
    }
    try {
      // The one line authz needs (docs/formats.md): the user's current
      // revision, a number, 0 if the user was never logged out everywhere.
      const rev = Number(await redis.get(revisionKey(user.username))) || 0;
      req.session = {
        username: user.username,
        roles: user.roles,
        rev,
        // The cookie is the session's JSON and nothing more: without
        // something unique in it, two sign-ins of one user at one revision
        // would be the same cookie, and authz, which denies one cookie by
        // its hash (POST /logout, authz logout --session), could not sign
        // out one browser and leave the other signed in.
        nonce: crypto.randomBytes(12).toString('base64url'),
      };
    } catch (err) {
      next(err);
      return;
    }
    console.log(`express-cookie-session: signed in ${user.username}`);
    res.redirect(303, rd);
  });

  app.get('/login/me', (req, res) => {
    if (!req.session.username) {
      res.status(401).json({ error: 'not signed in' });
      return;
    }
    res.json({ username: req.session.username, rev: req.session.rev ?? 0 });
  });

  // Changes the session, as app code does all the time: cookie-session
  // writes both cookies again, keeping everything else in the session.
  app.get('/login/count', (req, res) => {
    if (!req.session.username) {
      res.status(401).json({ error: 'not signed in' });
      return;
    }
    req.session.count = (req.session.count ?? 0) + 1;
    res.json({ username: req.session.username, count: req.session.count });
  });

  app.use((req, res) => {
    res.status(404).type('text').send('not found\n');
  });
  // Express's default handler shows stack traces outside production.
  app.use((err, req, res, next) => {
    const status = err.status >= 400 && err.status < 500 ? err.status : 500;
    console.error(`express-cookie-session: ${req.method} ${req.path}: ${status === 500 ? err.stack || err : err.message}`);
    if (res.headersSent) return next(err);
    res.status(status).type('text').send(status === 500 ? 'something went wrong\n' : `${err.message}\n`);
  });
  return app;
}

// sameSite refuses a POST another site made the browser send: another site
// must not sign a visitor in under an account of its choosing.
function sameSite(req, res, next) {
  if (req.get('Sec-Fetch-Site') === 'cross-site') {
    res.status(403).type('text').send('cross-site request refused\n');
    return;
  }
  const origin = req.get('Origin');
  if (origin !== undefined) {
    const host = hostname(origin);
    if (host === '' || host !== hostname(`http://${req.get('Host')}`)) {
      res.status(403).type('text').send('cross-site request refused\n');
      return;
    }
  }
  next();
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
<form method="post" action="/logout"><button>Sign out</button> (authz denies this cookie everywhere)</form>
<form method="post" action="/logout?everywhere=1"><button>Sign out everywhere</button></form>
</body></html>
`;
}

async function main() {
  if (config.keys.length === 0) {
    throw new Error('SESSION_KEYS is required (comma-separated; the first signs, all verify)');
  }
  if (!Number.isInteger(config.port) || config.port <= 0 || config.port > 65535) {
    throw new Error(`PORT ${process.env.PORT} is not a port`);
  }
  if (!Number.isSafeInteger(config.maxAge) || config.maxAge <= 0) {
    throw new Error(`SESSION_MAX_AGE ${process.env.SESSION_MAX_AGE} is not a number of milliseconds`);
  }
  const redis = createClient({ url: config.redisURL, disableOfflineQueue: true });
  redis.on('error', (err) => console.error(`express-cookie-session: redis: ${err.message}`));
  await redis.connect();

  const server = buildApp(redis).listen(config.port, config.host, () => {
    console.log(`express-cookie-session: listening on ${config.host}:${config.port}`);
  });
  server.on('error', (err) => {
    console.error(`express-cookie-session: ${err.message}`);
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
  console.error(`express-cookie-session: ${err.message}`);
  process.exit(1);
});
