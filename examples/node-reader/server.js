// An "unchanged" Node service: it reads the shared session itself with
// express-session and connect-redis, as services did before authz, and
// knows nothing of authz. It shows that both kinds of service can run side
// by side on one session: a logout anywhere (the Express login app, authz's
// endpoint or CLI) ends the session here too, because it ends in Redis.
//
// Every GET answers JSON: 200 {"user": <passport.user>, "count": n} for a
// signed-in session, 401 {"user": null} otherwise.
//
// Environment: PORT (3001), HOST (127.0.0.1), REDIS_URL, SESSION_SECRET
// (comma-separated, the first signs, all verify) and SESSION_PREFIX (sess:),
// the same as the login service's.
'use strict';

const express = require('express');
const session = require('express-session');
const { RedisStore } = require('connect-redis');
const { createClient } = require('redis');

const config = {
  host: process.env.HOST || '127.0.0.1',
  port: Number(process.env.PORT || 3001),
  redisURL: process.env.REDIS_URL || 'redis://127.0.0.1:6379/0',
  secrets: (process.env.SESSION_SECRET || '').split(',').filter(Boolean),
  prefix: process.env.SESSION_PREFIX ?? 'sess:',
};

function buildApp(redis) {
  const app = express();
  app.disable('x-powered-by');
  // The same options as the login service. This app never changes the
  // session, so express-session never writes it; it only extends its TTL.
  app.use(session({
    name: 'connect.sid',
    secret: config.secrets,
    store: new RedisStore({ client: redis, prefix: config.prefix }),
    resave: false,
    saveUninitialized: false,
    cookie: { path: '/', maxAge: 60 * 60 * 1000, httpOnly: true, sameSite: 'lax' },
  }));

  app.get('/{*path}', (req, res) => {
    res.set('Cache-Control', 'no-store');
    const user = req.session.passport?.user ?? null;
    if (user === null) {
      res.status(401).json({ user: null });
      return;
    }
    res.json({ user, count: req.session.count ?? 0 });
  });

  app.use((err, req, res, next) => {
    console.error(`node-reader: ${req.method} ${req.path}: ${err.stack || err}`);
    if (res.headersSent) return next(err);
    res.status(500).json({ error: 'session store unavailable' });
  });
  return app;
}

async function main() {
  if (config.secrets.length === 0) {
    throw new Error('SESSION_SECRET is required (comma-separated; the first signs, all verify)');
  }
  if (!Number.isInteger(config.port) || config.port <= 0 || config.port > 65535) {
    throw new Error(`PORT ${process.env.PORT} is not a port`);
  }
  const redis = createClient({ url: config.redisURL, disableOfflineQueue: true });
  redis.on('error', (err) => console.error(`node-reader: redis: ${err.message}`));
  await redis.connect();

  const server = buildApp(redis).listen(config.port, config.host, () => {
    console.log(`node-reader: listening on ${config.host}:${config.port}`);
  });
  server.on('error', (err) => {
    console.error(`node-reader: ${err.message}`);
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
  console.error(`node-reader: ${err.message}`);
  process.exit(1);
});
