// Browser tests of the admin UI (src/admin/ui): headless Chromium driven by
// playwright-core, one scenario per run, against a gateway that the caller
// started (the Rust side, or by hand).
//
//   node tests/peers/ui.mjs SCENARIO
//
// Environment:
//   WASP_UI_URL             the UI, e.g. http://127.0.0.1:9901/ui/
//   WASP_ADMIN_TOKEN        the gateway's admin token; empty = none set
//   WASP_UI_ARGS            JSON object: the scenario's parameters
//   WASP_UI_SHOTS           optional directory for PNG screenshots
//   WASP_TEST_NODE_MODULES  where playwright-core is: the node_modules
//                           directory or the one holding it (default
//                           ~/.cache/wasp/node/node_modules)
//   CHROMIUM                the browser (default /usr/bin/chromium)
//
// Output: progress lines; `READY` alone on a line where a scenario says so
// (the caller then changes something: load, a stopped gateway); last line
// `OK <json>` (exit 0) or `FAIL <reason>` (exit 1). Any uncaught error, a
// console error, a CSP violation or the global time limit (60 s, longer
// only when a scenario's own timeout_s asks for it) fails the run.
//
// Scenarios (ARGS in parentheses):
//   login (token)                           form, a refused token, then the dashboard
//   create_service (name, instance)         New service → form → Save and apply
//   field_error (name, pointer, value)      a 422 shown at the input with that data-pointer
//   apply_version (name, from, to, apply)   diff of two versions, apply one (diff.png)
//   dashboard_rate (service, min_rps, timeout_s)  Req/s of a row reaches min_rps (dashboard.png)
//   push (endpoint, message)                Connections → first row → Send
//   console (endpoint, event, expect)       Console → connect → send → a received line
//   keys (consumer)                         Create key (shown once), then revoke it
//   import (document_bad, document_good)    validation error with its pointer, then apply
//   layout                                  390 px: no page scroll; Tab reaches Services
//   gateway_down                            READY, then the "Cannot reach" banner

import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';

const scenario = process.argv[2] || '';
const base = process.env.WASP_UI_URL || 'http://127.0.0.1:9901/ui/';
const token = process.env.WASP_ADMIN_TOKEN || '';
const shots = process.env.WASP_UI_SHOTS || '';
let args;
try {
  args = JSON.parse(process.env.WASP_UI_ARGS || '{}');
} catch (e) {
  console.log(`FAIL WASP_UI_ARGS is not JSON: ${e.message}`);
  process.exit(1);
}

let browser = null;
let finished = false;

/** Ends the run: closes the browser, prints the verdict as the last line. */
async function finish(code, line) {
  if (finished) return;
  finished = true;
  try {
    if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 3000))]);
  } catch {
    /* closing is best effort */
  }
  process.stdout.write(line + '\n', () => process.exit(code));
}
const ok = (obj = {}) => finish(0, 'OK ' + JSON.stringify(obj));
const fail = (reason) => finish(1, 'FAIL ' + String(reason).replace(/\s+/g, ' ').slice(0, 2000));
const log = (...a) => console.log('..', ...a);

process.on('uncaughtException', (e) => fail(`uncaught: ${e && e.stack ? e.stack : e}`));
process.on('unhandledRejection', (e) => fail(`unhandled: ${e && e.stack ? e.stack : e}`));
const limitS = Math.max(60, Number(args.timeout_s || 0) + 30);
setTimeout(() => fail(`timed out after ${limitS} s in ${scenario}`), limitS * 1000);

function need(...names) {
  for (const n of names) if (args[n] === undefined) throw new Error(`WASP_UI_ARGS needs "${n}" for ${scenario}`);
}

function loadPlaywright() {
  const dir = process.env.WASP_TEST_NODE_MODULES || join(homedir(), '.cache', 'wasp', 'node', 'node_modules');
  // A file inside `dir` resolves from dir/node_modules and from dir itself
  // when dir is a node_modules: either spelling of the variable works.
  const require = createRequire(join(dir, 'ui-test.js'));
  return require('playwright-core');
}

/**
 * Chrome logs every HTTP error status of a fetch as a console error
 * ("Failed to load resource: ... status of 401"). 4xx answers are part of
 * what the UI shows in words (401 login, 404, 409, 422); they are not page
 * errors. 5xx answers, CSP violations and anything else are. When the
 * scenario stops the gateway, connection failures are expected too.
 */
function expectedConsoleError(text) {
  if (/^Failed to load resource: the server responded with a status of 4\d\d/.test(text)) return true;
  if (scenario === 'gateway_down' && /net::ERR_|Failed to fetch/.test(text)) return true;
  return false;
}

async function openPage(pw, { viewport = { width: 1280, height: 800 }, withToken = true } = {}) {
  browser = await pw.chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox'],
  });
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    if (expectedConsoleError(text)) return log('console (expected):', text);
    fail(`console error: ${text}`);
  });
  page.on('pageerror', (e) => fail(`page error: ${e.message}`));
  // Signing in through the form is the login scenario's job; the others
  // start with the token in the tab's sessionStorage, where the form puts it.
  if (withToken && token) {
    await page.addInitScript((t) => sessionStorage.setItem('wasp.adminToken', t), token);
  }
  return page;
}

const go = async (page, hash) => {
  log('open', hash);
  await page.goto(new URL(hash, base).href);
};

async function shot(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, name), clip: { x: 0, y: 0, width: 1280, height: 800 } });
  log('screenshot', join(shots, name));
}

const esc = (s) => String(s).replace(/["\\]/g, '\\$&');

/**
 * Polls `fn` (async → truthy) every `ms` until it holds or `timeoutMs`
 * passes; `what` (a string, or a function for a message made at the end)
 * names it in the failure.
 */
async function until(fn, timeoutMs, what, ms = 200) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`gave up waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, ms));
  }
}

// ---------------------------------------------------------------------------

const scenarios = {
  async login(pw) {
    if (!token) throw new Error('login needs WASP_ADMIN_TOKEN (the gateway must have a token)');
    const page = await openPage(pw, { withToken: false });
    await go(page, '#/dashboard');
    const input = page.getByLabel('Admin token');
    await input.waitFor();
    log('login form shown');
    await input.fill('wrong-' + token.split('').reverse().join(''));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('That token was refused (401)').waitFor();
    log('wrong token refused');
    if (!(await input.isVisible())) throw new Error('the form went away after a wrong token');
    await input.fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Dashboard', level: 1 }).waitFor();
    if (await page.getByLabel('Admin token').count()) throw new Error('the form is still there after the right token');
    const kept = await page.evaluate(() => sessionStorage.getItem('wasp.adminToken'));
    if (kept !== token) throw new Error('the token was not kept in sessionStorage');
    log('signed in, dashboard shown');
    return { wrong_refused: true };
  },

  async create_service(pw) {
    need('name', 'instance');
    const page = await openPage(pw);
    await go(page, '#/services');
    await page.getByRole('link', { name: 'New service' }).click();
    await page.getByLabel('Name', { exact: true }).fill(args.name);
    const inst = page.locator('input[data-pointer="/instances/0"]');
    await inst.fill(args.instance);
    await page.getByLabel('Comment').fill(args.comment || 'created by the UI test');
    await page.getByRole('button', { name: 'Save and apply' }).click();
    const flash = page.locator('.flash', { hasText: 'Applied' });
    await flash.waitFor();
    const text = await flash.textContent();
    log('shown:', text);
    const version = Number(await flash.getAttribute('data-version'));
    if (!Number.isInteger(version) || version < 1) throw new Error(`no version in "${text}"`);
    return { version };
  },

  async field_error(pw) {
    need('name', 'pointer', 'value');
    const page = await openPage(pw);
    await go(page, `#/services/${encodeURIComponent(args.name)}`);
    await page.locator('.editor fieldset[data-pointer=""]').waitFor();
    const formButton = page.getByRole('button', { name: 'Form', exact: true });
    if ((await formButton.getAttribute('aria-pressed')) !== 'true') await formButton.click();
    let input = page.locator(`input[data-pointer="${esc(args.pointer)}"]`);
    if ((await input.count()) === 0) {
      // The field is not in the service yet: add it with its object's "Add field".
      const cut = args.pointer.lastIndexOf('/');
      const parent = args.pointer.slice(0, cut);
      const key = args.pointer.slice(cut + 1).replace(/~1/g, '/').replace(/~0/g, '~');
      log(`no input at ${args.pointer}: adding field "${key}" to "${parent}"`);
      const adder = page.locator(`.add-field[data-add-field="${esc(parent)}"]`);
      await adder.getByLabel('New field').fill(key);
      await adder.getByLabel('Value (JSON)').fill(JSON.stringify(String(args.value)));
      await adder.getByRole('button', { name: 'Add field' }).click();
      input = page.locator(`input[data-pointer="${esc(args.pointer)}"]`);
    }
    await input.fill(String(args.value));
    await page.getByRole('button', { name: 'Save and apply' }).click();
    await until(async () => (await input.getAttribute('aria-invalid')) === 'true', 10000, 'aria-invalid on the input');
    const described = await input.getAttribute('aria-describedby');
    const err = page.locator(`#${described}`);
    if (!(await err.evaluate((el) => el.classList.contains('field-error')))) throw new Error('aria-describedby is not the .field-error');
    const message = (await err.textContent()).trim();
    const focused = await input.evaluate((el) => el === document.activeElement);
    if (!focused) throw new Error('the refused input does not have the focus');
    const topText = await page.locator('.error-box').textContent();
    if (!topText.includes('The gateway refused this')) throw new Error(`no message at the top: ${topText}`);
    log('field error:', message);
    return { message };
  },

  async apply_version(pw) {
    need('name', 'from', 'to', 'apply');
    const page = await openPage(pw);
    await go(page, `#/services/${encodeURIComponent(args.name)}/versions`);
    await page.getByLabel('From', { exact: true }).selectOption(String(args.from));
    await page.getByLabel('To', { exact: true }).selectOption(String(args.to));
    const table = page.locator(`table.diff[aria-label="Differences between version ${args.from} and version ${args.to} of ${esc(args.name)}"]`);
    await table.waitFor();
    await table.scrollIntoViewIfNeeded();
    const rows = await table.locator('tbody tr').count();
    const added = await table.locator('tbody tr.add').count();
    const removed = await table.locator('tbody tr.del').count();
    log(`diff: ${rows} rows, ${added} added, ${removed} removed`);
    await shot(page, 'diff.png');
    await page.getByRole('button', { name: `Apply version ${args.apply}`, exact: true }).click();
    const dialog = page.getByRole('dialog', { name: `Apply version ${args.apply} of ${args.name}?` });
    await dialog.waitFor();
    await dialog.getByRole('button', { name: 'Apply', exact: true }).click();
    await page.getByText(`Version ${args.apply} is active`).waitFor();
    // The table was refreshed: the applied version carries the active marker.
    await page.locator(`tr[data-version="${args.apply}"] .badge`, { hasText: 'active' }).waitFor();
    return { diff_rows: rows, added, removed };
  },

  async dashboard_rate(pw) {
    need('service', 'min_rps');
    const timeoutS = Number(args.timeout_s || 30);
    const page = await openPage(pw);
    await go(page, '#/dashboard');
    await page.locator('table.services tbody tr[data-service]').first().waitFor();
    console.log('READY');
    const cell = page.locator(`table.services tr[data-service="${esc(args.service)}"] td[data-metric="rps"]`);
    let rps = NaN;
    await until(
      async () => {
        if (!(await cell.count())) return false;
        rps = parseFloat(await cell.textContent());
        return rps >= Number(args.min_rps);
      },
      timeoutS * 1000,
      () => `Req/s of ${args.service} ≥ ${args.min_rps} (last shown: ${Number.isNaN(rps) ? 'no row' : rps})`,
      250,
    );
    log('req/s', rps);
    // A few points on the charts before the picture (≤ 5 s more).
    await until(
      async () => {
        const d = await page.locator('figure.chart path.line').first().getAttribute('d').catch(() => '');
        return (d || '').split('L').length >= 4;
      },
      5000,
      'chart points',
    ).catch(() => log('charts have few points'));
    await shot(page, 'dashboard.png');
    return { rps };
  },

  async push(pw) {
    need('endpoint', 'message');
    const page = await openPage(pw);
    await go(page, '#/connections');
    const select = page.getByLabel('Endpoint', { exact: true });
    await page.locator(`#conn-endpoint option[value="${esc(args.endpoint)}"]`).waitFor({ state: 'attached' });
    await select.selectOption(args.endpoint);
    await page.locator('table.connections caption', { hasText: `on ${args.endpoint}` }).waitFor();
    const row = page.locator('table.connections tbody tr[data-connection]').first();
    await until(
      async () => {
        if (await row.count()) return true;
        await page.getByRole('button', { name: 'Refresh' }).click();
        return false;
      },
      10000,
      `a connection on ${args.endpoint}`,
      1000,
    );
    const id = await row.getAttribute('data-connection');
    log('connection', id);
    await row.getByRole('button', { name: 'Send' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByLabel('Message').fill(String(args.message));
    await dialog.getByRole('button', { name: 'Send', exact: true }).click();
    await dialog.getByText(/^Sent/).waitFor();
    log(await dialog.locator('.success').textContent());
    return { id };
  },

  async console(pw) {
    need('endpoint', 'event', 'expect');
    const page = await openPage(pw);
    await go(page, '#/console');
    await page.locator(`#console-endpoint option[value="${esc(args.endpoint)}"]`).waitFor({ state: 'attached' });
    await page.getByLabel('Endpoint', { exact: true }).selectOption(args.endpoint);
    const connect = page.getByRole('button', { name: 'Connect', exact: true });
    await until(() => connect.isEnabled(), 10000, 'the Connect button');
    await connect.click();
    await page.locator('.console-state', { hasText: 'Connected to' }).waitFor();
    log(await page.locator('.console-state').textContent());
    await page.getByLabel('Event', { exact: true }).fill(String(args.event));
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    const line = page.locator('.console-log li.in', { hasText: String(args.expect) }).first();
    await line.waitFor();
    const received = (await line.locator('.msg').textContent()).trim();
    log('received', received);
    await page.getByRole('button', { name: 'Disconnect' }).click();
    await page.locator('.console-state', { hasText: 'Closed' }).waitFor();
    return { received };
  },

  async keys(pw) {
    need('consumer');
    const page = await openPage(pw);
    await go(page, '#/consumers');
    await page.getByRole('link', { name: args.consumer, exact: true }).click();
    await page.getByRole('link', { name: 'Keys', exact: true }).click();
    await page.getByRole('button', { name: 'Create key' }).click();
    const box = page.locator('.key-once');
    await box.waitFor();
    if (!(await box.textContent()).includes('shown only once')) throw new Error('the key is not marked "shown only once"');
    const key = (await box.locator('code.new-key').textContent()).trim();
    const id = await box.getAttribute('data-key-id');
    log('created key', id);
    await box.getByRole('button', { name: 'Copy key' }).click();
    await box.getByText(/Copied|selected/).waitFor();
    const row = page.locator(`table.keys tr[data-key-id="${esc(id)}"]`);
    await row.waitFor();
    await row.getByRole('button', { name: 'Revoke' }).click();
    const dialog = page.getByRole('dialog', { name: `Revoke key ${id} of ${args.consumer}?` });
    await dialog.getByRole('button', { name: 'Revoke', exact: true }).click();
    await page.getByText(`Key ${id} was revoked`).waitFor();
    await row.waitFor({ state: 'detached' });
    return { key, id };
  },

  async import(pw) {
    need('document_bad', 'document_good');
    const page = await openPage(pw);
    await go(page, '#/config');
    const file = page.getByLabel('Configuration file');
    const put = (name, text) => file.setInputFiles({ name, mimeType: 'application/json', buffer: Buffer.from(String(text)) });
    await put('bad.json', args.document_bad);
    const err = page.locator('.import-error');
    await err.waitFor();
    const pointer = await err.getAttribute('data-pointer');
    log('refused:', (await err.textContent()).trim());
    await put('good.json', args.document_good);
    await page.locator('.import-valid').waitFor();
    if (await err.count()) throw new Error('the old error is still shown');
    await page.locator('.import-summary').waitFor();
    await page.getByRole('button', { name: 'Apply import' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('button', { name: 'Apply import' }).click();
    const done = page.getByText(/^Import applied/);
    await done.waitFor();
    log(await done.textContent());
    return { error_pointer: pointer };
  },

  async layout(pw) {
    const page = await openPage(pw, { viewport: { width: 390, height: 844 } });
    const widths = {};
    for (const [hash, ready] of [
      ['#/dashboard', 'table.services'],
      ['#/services', 'table.entities'],
      ['#/connections', 'table.connections'],
    ]) {
      await go(page, hash);
      await page.locator(ready).waitFor();
      await page.waitForTimeout(300);
      const [sw, iw] = await page.evaluate(() => [document.scrollingElement.scrollWidth, innerWidth]);
      widths[hash] = sw;
      log(`${hash}: scrollWidth ${sw}, innerWidth ${iw}`);
      if (sw > iw + 1) throw new Error(`${hash} scrolls sideways at 390 px (${sw} > ${iw})`);
    }
    // Keyboard: from the top of the page, Tab to the Services link, Enter.
    await go(page, '#/dashboard');
    await page.locator('table.services').waitFor();
    await page.evaluate(() => document.activeElement && document.activeElement.blur());
    let reached = false;
    for (let i = 0; i < 25 && !reached; i++) {
      await page.keyboard.press('Tab');
      reached = await page.evaluate(() => {
        const a = document.activeElement;
        return !!a && a.tagName === 'A' && a.closest('nav') !== null && a.textContent.trim() === 'Services';
      });
    }
    if (!reached) throw new Error('Tab never reached the Services link');
    const ring = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    if (ring === 'none') throw new Error('the focused link shows no focus ring');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Services', level: 1 }).waitFor();
    if (!(await page.evaluate(() => location.hash)).startsWith('#/services')) throw new Error('Enter did not open Services');
    return {};
  },

  async gateway_down(pw) {
    const page = await openPage(pw);
    await go(page, '#/dashboard');
    await page.locator('table.services').waitFor();
    console.log('READY');
    await page.getByText('Cannot reach the gateway').first().waitFor({ timeout: 20000 });
    log('banner shown');
    return {};
  },
};

(async () => {
  const run = scenarios[scenario];
  if (!run) return fail(`unknown scenario "${scenario}"; one of: ${Object.keys(scenarios).join(', ')}`);
  log('scenario', scenario, 'at', base);
  const result = await run(loadPlaywright());
  await ok(result);
})().catch((e) => fail(e && e.message ? e.message : e));
