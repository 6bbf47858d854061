'use strict'
// Generates sessionfmt's test vectors with the real npm packages: every
// cookie is made by the package itself (or, for content the package would
// never write, with the package's own MAC function), and every vector
// carries what the package's middleware made of it, asked over a real
// request. The Go tests then check that sessionfmt agrees, or is stricter
// where a vector says so.
//
//   node gen.js > ../vectors.json
//
// Secrets here are test-only.

const http = require('node:http')
const crypto = require('node:crypto')
const clientSessions = require('client-sessions')
const cookieSession = require('cookie-session')
const Keygrip = require('cookie-session/node_modules/keygrip')
const Fastify = require('fastify')

const versions = {}
for (const p of ['client-sessions', 'cookie-session', 'cookie-session/node_modules/cookies', 'cookie-session/node_modules/keygrip', 'cookies', '@fastify/session', '@fastify/cookie', 'fastify', 'cookie']) {
  versions[p] = JSON.parse(require('node:fs').readFileSync(require('node:path').join(__dirname, 'node_modules', p, 'package.json'))).version
}
versions.node = process.versions.node

const NOW = Date.now()
const DAY = 24 * 60 * 60 * 1000
const big = 'x'.repeat(5000)

// ---- helpers ----------------------------------------------------------

// serve runs handler behind a real HTTP server on loopback and returns a
// function sending one request with the given Cookie header.
async function serve (handler) {
  const srv = http.createServer(handler)
  await new Promise(resolve => srv.listen(0, '127.0.0.1', resolve))
  const base = `http://127.0.0.1:${srv.address().port}`
  const req = async (path, cookie) => {
    const headers = cookie === undefined ? {} : { cookie }
    const r = await fetch(base + path, { headers })
    return { status: r.status, body: await r.text(), setCookie: r.headers.getSetCookie() }
  }
  req.close = () => srv.close()
  return req
}

function cookieValue (setCookies, name) {
  for (const c of setCookies) {
    const pair = c.split(';', 1)[0]
    const eq = pair.indexOf('=')
    if (pair.slice(0, eq) === name) return pair.slice(eq + 1)
  }
  return undefined
}

// flip changes the character at i to another one of the same alphabet.
function flip (s, i) {
  const c = s[i]
  const r = c === 'A' ? 'B' : 'A'
  return s.slice(0, i) + r + s.slice(i + 1)
}

// ---- client-sessions ---------------------------------------------------

const CS_SECRET = 'client-sessions test secret, long enough'
const CS_OTHER = 'a different secret entirely, also long'

async function clientSessionsVectors () {
  const out = []
  const cfgs = {
    secret: { cookieName: 'session', secret: CS_SECRET },
    keys128: {
      cookieName: 'session_state',
      encryptionKey: Buffer.alloc(16, 7),
      signatureKey: Buffer.alloc(48, 9),
      encryptionAlgorithm: 'aes128',
      signatureAlgorithm: 'sha384'
    },
    keys192: {
      cookieName: 'session',
      encryptionKey: Buffer.alloc(24, 1),
      signatureKey: Buffer.alloc(64, 2),
      encryptionAlgorithm: 'aes192',
      signatureAlgorithm: 'sha512-drop256'
    },
    drop128: { cookieName: 'session', secret: CS_SECRET, signatureAlgorithm: 'sha256-drop128' }
  }
  const jsonCfg = c => {
    const o = { cookieName: c.cookieName }
    if (c.secret) o.secret = c.secret
    if (c.encryptionKey) o.encryptionKey = c.encryptionKey.toString('hex')
    if (c.signatureKey) o.signatureKey = c.signatureKey.toString('hex')
    if (c.encryptionAlgorithm) o.encryptionAlgorithm = c.encryptionAlgorithm
    if (c.signatureAlgorithm) o.signatureAlgorithm = c.signatureAlgorithm
    return o
  }
  // One server per configuration: GET /whoami answers what the middleware
  // sees (the session's own keys, or null when it found none), GET /login
  // sets content given as JSON in the query.
  const servers = {}
  for (const [k, c] of Object.entries(cfgs)) {
    const mw = clientSessions({ ...c, duration: DAY, activeDuration: 5 * 60 * 1000 })
    const prop = c.cookieName
    servers[k] = await serve((req, res) => {
      mw(req, res, err => {
        if (err) { res.statusCode = 500; return res.end(String(err)) }
        try {
          const u = new URL(req.url, 'http://x')
          if (u.pathname === '/login') {
            const content = JSON.parse(u.searchParams.get('c'))
            for (const [kk, v] of Object.entries(content)) req[prop][kk] = v
            return res.end('ok')
          }
          const s = req[prop]
          res.setHeader('content-type', 'application/json')
          res.end(JSON.stringify(Object.keys(s).length ? s : null))
        } catch (e) {
          res.statusCode = 500
          res.end(String(e))
        }
      })
    })
  }
  // opts as util.encode/decode want them, keys filled in like the factory.
  const encOpts = c => ({ ...c })

  async function add (name, cfgKey, cookie, want, extra = {}) {
    const c = cfgs[cfgKey]
    const r = await servers[cfgKey]('/whoami', `${c.cookieName}=${cookie}`)
    let node
    if (r.status !== 200) node = { error: r.body }
    else node = { session: JSON.parse(r.body) }
    // util.decode is the library's own decoder, without the middleware's
    // expiry and sliding.
    let decoded
    try { decoded = clientSessions.util.decode({ ...c }, cookie) !== undefined } catch (e) { decoded = false }
    node.decoded = decoded
    const reissued = cookieValue(r.setCookie, c.cookieName)
    if (reissued !== undefined) node.reissued = reissued
    out.push({ name, config: jsonCfg(c), cookie, want, node, ...extra })
  }

  async function login (cfgKey, content) {
    const c = cfgs[cfgKey]
    const r = await servers[cfgKey]('/login?c=' + encodeURIComponent(JSON.stringify(content)))
    return cookieValue(r.setCookie, c.cookieName)
  }

  const user = { username: 'ann', rev: 3, roles: ['admin', 'dev'] }
  const valid = await login('secret', user)
  await add('valid, from the middleware', 'secret', valid, 'ok', { content: user })
  const uni = { username: 'Zoë 🌍 名前', note: 'quote " backslash \\ tab \t nul \u0000 line \u2028' }
  await add('unicode content', 'secret', await login('secret', uni), 'ok', { content: uni })
  const revStr = { username: 'bob', rev: '3' }
  await add('revision of the wrong type (string)', 'secret', await login('secret', revStr), 'ok', { content: revStr })
  const revObj = { username: 'bob', rev: { n: 1 } }
  await add('revision of the wrong type (object)', 'secret', await login('secret', revObj), 'ok', { content: revObj })
  await add('valid, aes128 + sha384 explicit keys', 'keys128', await login('keys128', user), 'ok', { content: user })
  await add('valid, aes192 + sha512-drop256 explicit keys', 'keys192', await login('keys192', user), 'ok', { content: user })
  await add('valid, sha256-drop128', 'drop128', await login('drop128', user), 'ok', { content: user })

  const parts = valid.split('.')
  // Tampering, one piece at a time.
  for (const [i, what] of [[0, 'iv'], [1, 'ciphertext'], [4, 'hmac']]) {
    const p = parts.slice()
    p[i] = flip(p[i], 2)
    await add(`tampered ${what}`, 'secret', p.join('.'), 'bad_signature')
  }
  {
    const p = parts.slice(); p[2] = String(Number(p[2]) + 1)
    await add('tampered createdAt', 'secret', p.join('.'), 'bad_signature')
    const q = parts.slice(); q[3] = String(Number(q[3]) * 10)
    await add('tampered duration (longer)', 'secret', q.join('.'), 'bad_signature')
  }
  // parseInt leniency: Node MACs String(parseInt("0"+createdAt)) which is
  // the original number, so it accepts this changed cookie. sessionfmt
  // refuses non-canonical numbers (fails closed).
  {
    const p = parts.slice(); p[2] = '0' + p[2]
    await add('leading zero on createdAt (Node accepts via parseInt)', 'secret', p.join('.'), 'malformed', { go_stricter: true })
    const q = parts.slice(); q[3] = q[3] + 'x'
    await add('trailing junk on duration (Node accepts via parseInt)', 'secret', q.join('.'), 'malformed', { go_stricter: true })
  }
  await add('truncated (4 pieces)', 'secret', parts.slice(0, 4).join('.'), 'malformed')
  await add('truncated hmac', 'secret', valid.slice(0, -3), 'bad_signature')
  await add('six pieces', 'secret', valid + '.x', 'malformed')
  await add('empty', 'secret', '', 'malformed')

  // Wrong key: a cookie made with another secret.
  const other = clientSessions.util.encode({ cookieName: 'session', secret: CS_OTHER }, user, DAY, NOW)
  await add('wrong secret', 'secret', other, 'bad_signature')
  // Same keys, another cookie name inside: authentic but not this cookie's.
  const otherName = clientSessions.util.encode({ cookieName: 'admin', secret: CS_SECRET }, user, DAY, NOW)
  await add('same secret, other cookieName inside', 'secret', otherName, 'invalid_content')

  // Expired: createdAt + duration before now.
  const expired = clientSessions.util.encode({ cookieName: 'session', secret: CS_SECRET }, user, DAY, NOW - DAY - 60 * 1000)
  await add('expired', 'secret', expired, 'expired')
  // Near its end: the middleware slides createdAt by activeDuration and
  // re-issues (node.reissued); both cookies are valid.
  const sliding = clientSessions.util.encode({ cookieName: 'session', secret: CS_SECRET }, user, DAY, NOW - DAY + 60 * 1000)
  await add('within activeDuration of its end (re-issued)', 'secret', sliding, 'ok', { content: user })

  // Content the library would never write, MACed with its own computeHmac.
  const craft = (plaintext) => {
    const o = { cookieName: 'session', secret: CS_SECRET }
    clientSessions.util.encode(o, {}, DAY, NOW) // fills in o's keys exactly as the library derives them
    const iv = crypto.randomBytes(16)
    const cipher = crypto.createCipheriv('aes256', o.encryptionKey, iv)
    const ct = Buffer.concat([cipher.update(Buffer.from(plaintext, 'utf8')), cipher.final()])
    const mac = clientSessions.util.computeHmac(o, iv, ct, DAY, NOW)
    const b = x => x.toString('base64url')
    return [b(iv), b(ct), NOW, DAY, b(mac)].join('.')
  }
  await add('not JSON inside', 'secret', craft('session=not json'), 'invalid_content')
  await add('JSON number inside', 'secret', craft('session=42'), 'invalid_content')
  await add('JSON null inside', 'secret', craft('session=null'), 'invalid_content')
  await add('no = inside', 'secret', craft('session'), 'invalid_content')
  await add('empty object', 'secret', craft('session={}'), 'ok', { content: {} })

  // Oversized: the library writes it; browsers and sessionfmt do not take it.
  await add('oversized content', 'secret', clientSessions.util.encode({ cookieName: 'session', secret: CS_SECRET }, { username: 'ann', pad: big }, DAY, NOW), 'too_large', { go_stricter: true })

  for (const s of Object.values(servers)) s.close()
  return out
}

// ---- cookie-session ----------------------------------------------------

const CK_KEYS = ['cookie-session key one', 'cookie-session key two (old)']

async function cookieSessionVectors () {
  const out = []
  const cfgs = {
    sha1: { name: 'session', keys: CK_KEYS },
    sha256: { name: 'sess', keys: new Keygrip(CK_KEYS, 'sha256') },
    oldOnly: { name: 'session', keys: [CK_KEYS[1]] },
    other: { name: 'session', keys: ['somebody else\'s key'] }
  }
  const jsonCfg = c => ({ name: c.name, keys: Array.isArray(c.keys) ? c.keys : CK_KEYS, hash: Array.isArray(c.keys) ? 'sha1' : 'sha256' })
  const servers = {}
  for (const [k, c] of Object.entries(cfgs)) {
    const mw = cookieSession({ ...c })
    servers[k] = await serve((req, res) => {
      mw(req, res, err => {
        if (err) { res.statusCode = 500; return res.end(String(err)) }
        const u = new URL(req.url, 'http://x')
        if (u.pathname === '/login') {
          req.session = JSON.parse(u.searchParams.get('c'))
          return res.end('ok')
        }
        const s = req.session
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify(s && !s.isNew ? s : null))
      })
    })
  }
  async function login (cfgKey, content) {
    const c = cfgs[cfgKey]
    const r = await servers[cfgKey]('/login?c=' + encodeURIComponent(JSON.stringify(content)))
    return { value: cookieValue(r.setCookie, c.name), sig: cookieValue(r.setCookie, c.name + '.sig') }
  }
  async function add (name, cfgKey, header, want, extra = {}) {
    const c = cfgs[cfgKey === 'oldOnly' || cfgKey === 'other' ? 'sha1' : cfgKey]
    const r = await servers[cfgKey === 'oldOnly' || cfgKey === 'other' ? 'sha1' : cfgKey]('/whoami', header)
    const node = r.status === 200 ? { session: JSON.parse(r.body) } : { error: r.body }
    out.push({ name, config: jsonCfg(c), header, want, node, ...extra })
  }
  const hdr = (n, v, s) => `${n}=${v}; ${n}.sig=${s}`

  const user = { username: 'ann', rev: 3, roles: ['admin'] }
  const v = await login('sha1', user)
  await add('valid, from the middleware', 'sha1', hdr('session', v.value, v.sig), 'ok', { content: user, value: v.value, sig: v.sig })
  const uni = { username: 'Zoë 🌍 名前', note: 'quote " backslash \\ line \u2028' }
  const u = await login('sha1', uni)
  await add('unicode content', 'sha1', hdr('session', u.value, u.sig), 'ok', { content: uni, value: u.value, sig: u.sig })
  const revStr = { username: 'bob', rev: '3' }
  const rs = await login('sha1', revStr)
  await add('revision of the wrong type (string)', 'sha1', hdr('session', rs.value, rs.sig), 'ok', { content: revStr, value: rs.value, sig: rs.sig })
  const old = await login('oldOnly', user)
  await add('signed with the second (old) key', 'sha1', hdr('session', old.value, old.sig), 'ok', { content: user, value: old.value, sig: old.sig })
  const s256 = await login('sha256', user)
  await add('keygrip sha256', 'sha256', hdr('sess', s256.value, s256.sig), 'ok', { content: user, value: s256.value, sig: s256.sig })
  const foreign = await login('other', { username: 'mallory' })
  await add('wrong key', 'sha1', hdr('session', foreign.value, foreign.sig), 'bad_signature', { value: foreign.value, sig: foreign.sig })
  await add('tampered value', 'sha1', hdr('session', flip(v.value, 5), v.sig), 'bad_signature', { value: flip(v.value, 5), sig: v.sig })
  await add('tampered signature', 'sha1', hdr('session', v.value, flip(v.sig, 5)), 'bad_signature', { value: v.value, sig: flip(v.sig, 5) })
  await add('missing signature', 'sha1', `session=${v.value}`, 'bad_signature', { value: v.value, sig: '' })
  await add('truncated value', 'sha1', hdr('session', v.value.slice(0, -4), v.sig), 'bad_signature', { value: v.value.slice(0, -4), sig: v.sig })
  // cookies 0.9 strips a leading double quote (and the last character).
  await add('quoted value', 'sha1', `session="${v.value}"; session.sig=${v.sig}`, 'ok', { content: user, value: v.value, sig: v.sig })
  // Duplicates: the first one wins.
  await add('duplicate, first is foreign', 'sha1', `session=${foreign.value}; session=${v.value}; session.sig=${v.sig}`, 'bad_signature', { value: foreign.value, sig: v.sig })

  const kg = new Keygrip(CK_KEYS)
  const craft = body => {
    const value = Buffer.from(body, 'utf8').toString('base64')
    return { value, sig: kg.sign('session=' + value) }
  }
  const nj = craft('not json')
  await add('not JSON inside', 'sha1', hdr('session', nj.value, nj.sig), 'invalid_content', nj)
  const num = craft('42')
  await add('JSON number inside', 'sha1', hdr('session', num.value, num.sig), 'invalid_content', { ...num, go_stricter: true })
  const big1 = await login('sha1', { username: 'ann', pad: big })
  await add('oversized content', 'sha1', hdr('session', big1.value, big1.sig), 'too_large', { ...big1, go_stricter: true })

  for (const s of Object.values(servers)) s.close()
  return out
}

// ---- @fastify/session -------------------------------------------------

const FS_SECRET = 'a fastify session secret of 32+ characters'
const FS_OLD = 'the previous fastify secret, 32+ characters'

async function fastifyVectors () {
  const out = []
  // One store for every app, so a cookie one app signed finds its session
  // in another that only differs in secrets.
  const store = new (require('@fastify/session').MemoryStore)()
  async function app (opts) {
    const f = Fastify()
    f.register(require('@fastify/cookie'))
    f.register(require('@fastify/session'), { cookie: { secure: false }, store, ...opts })
    f.get('/login', async (req) => { req.session.set('username', req.query.u); return 'ok' })
    f.get('/whoami', async (req) => ({ username: req.session.get('username') ?? null, sessionId: req.session.sessionId }))
    await f.ready()
    return f
  }
  const cfgs = {
    default: { secret: FS_SECRET },
    rotated: { secret: [FS_SECRET, FS_OLD] },
    old: { secret: FS_OLD },
    sha512: { secret: FS_SECRET, algorithm: 'sha512' },
    prefix: { secret: FS_SECRET, cookiePrefix: 's:', cookieName: 'connect.sid' }
  }
  const apps = {}
  for (const [k, c] of Object.entries(cfgs)) apps[k] = await app(c)
  const jsonCfg = c => ({
    cookieName: c.cookieName || 'sessionId',
    secrets: Array.isArray(c.secret) ? c.secret : [c.secret],
    algorithm: c.algorithm || 'sha256',
    cookiePrefix: c.cookiePrefix || ''
  })
  async function login (k, u) {
    const name = cfgs[k].cookieName || 'sessionId'
    const r = await apps[k].inject({ url: '/login?u=' + encodeURIComponent(u) })
    const sc = [].concat(r.headers['set-cookie'])
    const raw = cookieValue(sc, name)
    const who = await apps[k].inject({ url: '/whoami', headers: { cookie: `${name}=${raw}` } })
    return { raw, setCookie: sc[0], sid: JSON.parse(who.body).sessionId }
  }
  async function add (name, k, cookieKey, header, want, extra = {}) {
    const r = await apps[k].inject({ url: '/whoami', headers: { cookie: header } })
    const node = r.statusCode === 200 ? JSON.parse(r.body) : { error: r.body }
    out.push({ name, config: jsonCfg(cfgs[k]), header, want, node, ...extra })
  }
  const v = await login('default', 'ann')
  await add('valid, from the middleware', 'default', 'sessionId', `sessionId=${v.raw}`, 'ok', { sid: v.sid, set_cookie: v.setCookie })
  // @fastify/cookie 11 (cookie 2.x) leaves + and / as they are; a client
  // that percent-encodes them (as express-session's cookie 0.x does) is
  // decoded first.
  await add('valid, sent percent-encoded', 'default', 'sessionId', `sessionId=${encodeURIComponent(decodeURIComponent(v.raw))}`, 'ok', { sid: v.sid })
  const uni = await login('default', 'Zoë 🌍')
  await add('valid (unicode user in the store)', 'default', 'sessionId', `sessionId=${uni.raw}`, 'ok', { sid: uni.sid })
  const old = await login('old', 'ann')
  await add('signed with the second (old) secret', 'rotated', 'sessionId', `sessionId=${old.raw}`, 'ok', { sid: old.sid })
  const r1 = await login('rotated', 'ann')
  await add('rotated list, first secret', 'rotated', 'sessionId', `sessionId=${r1.raw}`, 'ok', { sid: r1.sid })
  const s512 = await login('sha512', 'ann')
  await add('sha512', 'sha512', 'sessionId', `sessionId=${s512.raw}`, 'ok', { sid: s512.sid })
  const pre = await login('prefix', 'ann')
  await add('cookiePrefix s: as express-session writes it', 'prefix', 'connect.sid', `connect.sid=${pre.raw}`, 'ok', { sid: pre.sid })
  await add('wrong secret', 'default', 'sessionId', `sessionId=${old.raw}`, 'bad_signature')
  const dec = decodeURIComponent(v.raw)
  const dot = dec.lastIndexOf('.')
  await add('tampered id', 'default', 'sessionId', `sessionId=${encodeURIComponent(flip(dec, 3))}`, 'bad_signature')
  await add('tampered signature', 'default', 'sessionId', `sessionId=${encodeURIComponent(flip(dec, dot + 3))}`, 'bad_signature')
  await add('no signature', 'default', 'sessionId', `sessionId=${dec.slice(0, dot)}`, 'malformed')
  await add('empty signature', 'default', 'sessionId', `sessionId=${dec.slice(0, dot + 1)}`, 'malformed')
  await add('truncated signature', 'default', 'sessionId', `sessionId=${encodeURIComponent(dec.slice(0, -2))}`, 'bad_signature')
  // An id the default generator never makes, signed with the right secret.
  const odd = require('@fastify/cookie').sign('../../etc', FS_SECRET)
  await add('odd id, validly signed', 'default', 'sessionId', `sessionId=${encodeURIComponent(odd)}`, 'invalid_session_id', { go_stricter: true })
  const long = require('@fastify/cookie').sign('a'.repeat(5000), FS_SECRET)
  await add('oversized', 'default', 'sessionId', `sessionId=${long}`, 'too_large', { go_stricter: true })
  for (const a of Object.values(apps)) await a.close()
  return out
}

async function main () {
  const doc = {
    comment: 'Generated by sessionfmt/testdata/gen/gen.js with the real npm packages; node.* is what the package made of each cookie.',
    versions,
    now_ms: NOW,
    client_sessions: await clientSessionsVectors(),
    cookie_session: await cookieSessionVectors(),
    fastify_session: await fastifyVectors()
  }
  process.stdout.write(JSON.stringify(doc, null, 1) + '\n')
}

main().catch(e => { console.error(e); process.exit(1) })
