// The browser story of authz, in a real headless Chromium: a protected page
// sends a stranger to the login page, signing in brings them back to it with
// their identity, and signing out ends the session for good.
//
//   node login.mjs <base-url> <screenshot-dir>
//
// base-url is the site through Nginx (http://127.0.0.1:PORT), with
// examples/whoami as the app and examples/express-login as the login
// service. The signed-in page is saved as <screenshot-dir>/whoami.png.
// Each step is checked; the first one that fails ends the script with a
// message and exit status 1. e2e/browser_test.go runs it.
//
// CHROMIUM names the browser (default /usr/bin/chromium): playwright-core
// brings no browser of its own, and none can be downloaded where the tests
// run.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, shotDir] = process.argv.slice(2);
if (!base || !shotDir) {
  console.error('usage: node login.mjs <base-url> <screenshot-dir>');
  process.exit(2);
}

// A deep link with a query, so the test sees the login page carry the whole
// original URI through the sign-in and back.
const target = '/orders?page=2';

let step = 'launch Chromium';
function check(ok, what) {
  if (!ok) throw new Error(what);
}

let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    // The network the tests run in is closed: without these, Chromium's own
    // background connections (updates, sync, field trials, QUIC probes) are
    // refused and slow or break the launch. Playwright gives it a fresh,
    // temporary profile of its own (--user-data-dir).
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });

  // A small viewport keeps the screenshot small enough for the README.
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  // Every wait below is Playwright's own (navigation, waitForURL, locators);
  // a step that cannot complete fails in seconds, not at the Go test's
  // deadline.
  page.setDefaultTimeout(10_000);

  step = `open ${target} without a session`;
  await page.goto(base + target);
  const login = new URL(page.url());
  check(login.pathname === '/login' && login.searchParams.get('rd') === target,
    `ended on ${page.url()}, want /login?rd=${encodeURIComponent(target)}`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();

  step = 'sign in as alice';
  await page.getByLabel('Name').fill('alice');
  await page.getByLabel('Password').fill('demo');
  await page.getByRole('button', { name: 'Sign in' }).click();
  // POST /login answers 303 to rd: the browser must come back to the page
  // it first asked for.
  await page.waitForURL(base + target);

  step = 'read the identity on the whoami page';
  await page.getByRole('heading', { name: 'whoami' }).waitFor();
  const user = await page.locator('tr', { hasText: 'X-Auth-User' }).locator('td').textContent();
  check(user === 'alice', `X-Auth-User on the page is ${JSON.stringify(user)}, want "alice"`);
  const text = await page.locator('body').innerText();
  check(text.includes(`GET ${target}`), `the page does not show "GET ${target}":\n${text}`);
  const [cookie] = (await context.cookies()).filter((c) => c.name === 'connect.sid');
  check(cookie, 'no connect.sid cookie after signing in');

  step = 'save the screenshot';
  mkdirSync(shotDir, { recursive: true });
  const shot = join(shotDir, 'whoami.png');
  await page.screenshot({ path: shot });

  step = "sign out with the page's button (POST /logout, answered by authz)";
  await page.getByRole('button', { name: 'Sign out' }).click();
  // authz answers 303 to --logout-redirect, /login by default.
  await page.waitForURL((u) => u.pathname === '/login');
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();

  step = 'open / after signing out';
  await page.goto(base + '/');
  check(page.url() === base + '/login?rd=%2F', `ended on ${page.url()}, want /login?rd=%2F`);

  // authz expired the cookie, so the browser above sent none. Put the old
  // one back: the session itself must be over, not only forgotten by this
  // browser.
  step = 'open / with the signed-out cookie put back';
  await context.addCookies([cookie]);
  await page.goto(base + '/');
  check(page.url() === base + '/login?rd=%2F', `the old cookie ended on ${page.url()}, want /login?rd=%2F`);

  console.log(`ok: redirected to login, signed in as alice, signed out; screenshot ${shot}`);
} catch (err) {
  console.error(`FAIL: ${step}: ${err.message}`);
  process.exitCode = 1;
} finally {
  await browser?.close();
}
