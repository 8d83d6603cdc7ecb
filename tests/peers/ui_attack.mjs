// Hostile browser tests of the admin UI (src/admin/ui): headless Chromium
// driven by playwright-core, one scenario per run, against a gateway that
// the caller started (tests/attack_admin_ui_browser.rs). Same conventions as
// tests/peers/ui.mjs:
//
//   node tests/peers/ui_attack.mjs SCENARIO
//
// Environment: WASP_UI_URL, WASP_ADMIN_TOKEN, WASP_UI_ARGS (JSON),
// WASP_TEST_NODE_MODULES, CHROMIUM (see ui.mjs).
//
// Output: progress lines; `READY` alone on a line where a scenario waits for
// the caller; last line `OK <json>` (exit 0) or `FAIL <reason>` (exit 1).
// A page error, an unexpected console error, a CSP violation on a UI page
// or the time limit fails the run. Most scenarios report what they saw and
// leave the verdict to the Rust side, which also checks the gateway itself.
//
// Scenarios (ARGS in parentheses):
//   hostile_text (service, endpoint, payload, marker)   every view fed markup: nothing becomes markup
//   token_hygiene (service, endpoint, consumer)        sign in, use every page: where the token goes
//   framing                                           another origin frames / opens / drives the UI
//   new_over_existing (name, instance)                "New service" with the name of a live one
//   stale_editor (name, instance_b)                   two tabs edit one service; the older one saves
//   big_integer_edit (name, pointer, value, id_text)   edit one field of a service whose mock holds a 64-bit id
//   export_download                                   the downloaded export, as text
//   import_preview (document)                         the "what it changes" preview of a file
//   unsaved_edit_401 (name, pointer, value)           the token stops working as Save is pressed
//   dot_name (name)                                   "New service" named "." or ".."
//   non_latin1_token (token)                          a token with a character outside ISO-8859-1
//   huge_import (mb)                                  an import file over the admin body limit
//   dashboard_series (timeout_s, max_series)          legend size while the busiest set moves
//   dashboard_timers (rounds)                         /stats polls after leaving the dashboard
//   many_services (count)                             2,000 services: dashboard and list stay usable
//   console_flood (endpoint, count)                   a burst of pushes into the test console: shown, or closed?
//   connections_paging (total)                        pages of 50 over many connections
//   connections_stale                                 a slow list: the rows under a new page's caption
//   large_version (name, from, to)                    a 15,000-line version: diff and form
//   gateway_errors (service)                          502 HTML, 500 text, a slow answer, then recovery

import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';

const scenario = process.argv[2] || '';
const base = process.env.WASP_UI_URL || 'http://127.0.0.1:9901/ui/';
const adminOrigin = new URL(base).origin;
const token = process.env.WASP_ADMIN_TOKEN || '';
let args;
try {
  args = JSON.parse(process.env.WASP_UI_ARGS || '{}');
} catch (e) {
  console.log(`FAIL WASP_UI_ARGS is not JSON: ${e.message}`);
  process.exit(1);
}

let browser = null;
let finished = false;

async function finish(code, line) {
  if (finished) return;
  finished = true;
  try {
    if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 3000))]);
  } catch {
    /* best effort */
  }
  process.stdout.write(line + '\n', () => process.exit(code));
}
const ok = (obj = {}) => finish(0, 'OK ' + JSON.stringify(obj));
const fail = (reason) => finish(1, 'FAIL ' + String(reason).replace(/\s+/g, ' ').slice(0, 3000));
const log = (...a) => console.log('..', ...a);

process.on('uncaughtException', (e) => fail(`uncaught: ${e && e.stack ? e.stack : e}`));
process.on('unhandledRejection', (e) => fail(`unhandled: ${e && e.stack ? e.stack : e}`));
const limitS = Math.max(90, Number(args.timeout_s || 0) + 60);
setTimeout(() => fail(`timed out after ${limitS} s in ${scenario}`), limitS * 1000);

function need(...names) {
  for (const n of names) if (args[n] === undefined) throw new Error(`WASP_UI_ARGS needs "${n}" for ${scenario}`);
}

function loadPlaywright() {
  const dir = process.env.WASP_TEST_NODE_MODULES || join(homedir(), '.cache', 'wasp', 'node', 'node_modules');
  const require = createRequire(join(dir, 'ui-test.js'));
  return require('playwright-core');
}

// Console errors a scenario expects (by regex); everything else on a UI page fails the run.
const EXPECTED = {
  default: [/^Failed to load resource: the server responded with a status of 4\d\d/],
  gateway_errors: [/^Failed to load resource: the server responded with a status of [45]\d\d/],
  huge_import: [/net::ERR_|Failed to fetch|status of 4\d\d/],
  non_latin1_token: [/ISO-8859-1|status of 4\d\d/],
  console_flood: [/^WebSocket connection to .* failed/],
};
const wsErrors = []; // WebSocket failures Chrome reported on a UI page
function expectedConsoleError(text) {
  return [...EXPECTED.default, ...(EXPECTED[scenario] || [])].some((re) => re.test(text));
}

const csp = []; // CSP violations seen on UI pages

async function launch(pw) {
  if (!browser) {
    browser = await pw.chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: ['--no-sandbox'],
    });
  }
  return browser;
}

/** A UI page in a fresh context (or `context`), token in sessionStorage unless withToken is false. */
async function openPage(pw, { viewport = { width: 1280, height: 800 }, withToken = true, context = null, acceptDownloads = false } = {}) {
  await launch(pw);
  const ctx = context || (await browser.newContext({ viewport, acceptDownloads }));
  const page = await ctx.newPage();
  page.setDefaultTimeout(20000);
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    if (!page.url().startsWith(adminOrigin)) return log('console (other origin):', text);
    if (/Content Security Policy/i.test(text)) csp.push(text);
    if (/^WebSocket connection to .* failed/.test(text)) wsErrors.push(text);
    if (expectedConsoleError(text)) return log('console (expected):', text.slice(0, 300));
    fail(`console error: ${text}`);
  });
  page.on('pageerror', (e) => fail(`page error: ${e.message}`));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      (window.__csp = window.__csp || []).push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  if (withToken && token) await page.addInitScript((t) => sessionStorage.setItem('wasp.adminToken', t), token);
  return page;
}

const go = async (page, hash) => {
  log('open', hash);
  await page.goto(new URL(hash, base).href);
};

const esc = (s) => String(s).replace(/["\\]/g, '\\$&');

async function until(fn, timeoutMs, what, ms = 200) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`gave up waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, ms));
  }
}

/** The admin API from node (another operator, or the test's own look). */
async function adminApi(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(adminOrigin + path, { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await r.text();
  let data = text;
  try {
    data = JSON.parse(text);
  } catch {
    /* text */
  }
  return { status: r.status, data, text };
}

/** What markup got into the page: elements carrying the marker, inline scripts, non-hash links. */
async function injected(page, marker) {
  return page.evaluate((m) => {
    const out = {
      marked: document.querySelectorAll(`[${m}]`).length,
      inline_scripts: [...document.querySelectorAll('script')].filter((s) => !s.src).length,
      frames: document.querySelectorAll('iframe, object, embed').length,
      bad_links: [...document.querySelectorAll('a[href]')]
        .map((a) => a.getAttribute('href'))
        .filter((h) => !h.startsWith('#') && h !== 'favicon.svg'),
      pwned: window.__pwned || null,
      csp: window.__csp || [],
    };
    return out;
  }, marker);
}

// ---------------------------------------------------------------------------

const scenarios = {
  // Markup everywhere an attacker can put text: author and comment headers,
  // mock bodies and JSON keys, a connection's group, a pushed/echoed message,
  // a 422 message that echoes the input, an imported file's name and keys,
  // an unknown route. Nothing may become an element, a script or a link.
  async hostile_text(pw) {
    need('service', 'endpoint', 'payload', 'marker');
    const P = String(args.payload);
    const page = await openPage(pw);
    const seen = {};
    const visible = {};
    const check = async (where) => {
      const r = await injected(page, args.marker);
      seen[where] = r;
      log(where, JSON.stringify(r));
    };
    const shows = async (where) => {
      visible[where] = (await page.locator('main').innerText()).includes(P);
    };

    await go(page, '#/dashboard');
    await page.locator(`table.services tr[data-service="${esc(args.service)}"]`).waitFor();
    await check('dashboard');

    await go(page, '#/services');
    await page.locator(`table.entities tr[data-name="${esc(args.service)}"]`).waitFor();
    await shows('services list');
    await check('services list');

    await go(page, `#/services/${args.service}`);
    await page.locator('.editor fieldset[data-pointer=""]').waitFor();
    await check('edit form');
    await page.getByRole('button', { name: 'JSON', exact: true }).click();
    await page.locator('#json-text').waitFor();
    await check('edit json');
    await page.getByRole('button', { name: 'Form', exact: true }).click();

    // A 422 whose message echoes the value typed.
    const timeout = page.locator('input[data-pointer="/timeout"]');
    await timeout.fill(P);
    await page.getByRole('button', { name: 'Save and apply' }).click();
    await page.locator('.error-box').waitFor();
    visible['422 echo'] = (await page.locator('.error-box').innerText()).includes('<');
    await check('422 message');

    await go(page, `#/services/${args.service}/versions`);
    await page.locator('table.diff').waitFor();
    await shows('versions');
    await check('versions and diff');

    await go(page, `#/services/${args.service}/instances`);
    await page.getByText('Source:').waitFor();
    await check('instances');

    await go(page, '#/connections');
    const row = page.locator('table.connections tbody tr[data-connection]').first();
    await row.waitFor();
    await shows('connections');
    await check('connections');
    await row.getByRole('button', { name: 'View' }).click();
    await page.locator('pre.conn-details').waitFor();
    await check('connection dialog');
    await page.getByRole('button', { name: 'Done' }).click();

    await go(page, '#/console');
    await page.locator(`#console-endpoint option[value="${esc(args.endpoint)}"]`).waitFor({ state: 'attached' });
    await page.getByLabel('Endpoint', { exact: true }).selectOption(args.endpoint);
    const connect = page.getByRole('button', { name: 'Connect', exact: true });
    await until(() => connect.isEnabled(), 10000, 'the Connect button');
    await connect.click();
    await page.locator('.console-state', { hasText: 'Connected to' }).waitFor();
    await page.getByLabel('Event', { exact: true }).fill(P);
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    await page.locator('.console-log li.in').first().waitFor();
    await shows('console');
    await check('console');
    await page.getByRole('button', { name: 'Disconnect' }).click();

    await go(page, '#/config');
    const doc = JSON.stringify({ services: { [P]: { instances: [P] } } });
    await page.getByLabel('Configuration file').setInputFiles({ name: P.replace(/\//g, '_') + '.json', mimeType: 'application/json', buffer: Buffer.from(doc) });
    await page.locator('.import-error').waitFor();
    await page.locator('.import-summary').waitFor();
    await shows('import');
    await check('import');

    await page.goto(base + '#/' + encodeURIComponent(P));
    await page.getByRole('heading', { name: 'Not found' }).waitFor();
    await check('not found');

    const total = Object.values(seen).reduce(
      (s, r) => s + r.marked + r.inline_scripts + r.frames + r.bad_links.length + (r.pwned ? 1 : 0) + r.csp.length,
      0,
    );
    return { injected_total: total, seen, visible, csp_console: csp };
  },

  // Where the token goes while an operator signs in and uses every page.
  async token_hygiene(pw) {
    need('service', 'endpoint', 'consumer');
    if (!token) throw new Error('token_hygiene needs a token');
    const context = await (await launch(pw)).newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
    const page = await openPage(pw, { withToken: false, context });
    const requests = [];
    page.on('request', (r) => requests.push({ url: r.url(), headers: r.headers(), method: r.method() }));
    const sockets = [];
    page.on('websocket', (ws) => sockets.push(ws.url()));

    await go(page, '#/dashboard');
    const input = page.getByLabel('Admin token');
    await input.waitFor();
    const autocomplete = await input.getAttribute('autocomplete');
    await input.fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Dashboard', level: 1 }).waitFor();
    await page.locator('table.services').waitFor();

    await go(page, '#/services');
    await page.locator('table.entities').waitFor();
    await go(page, `#/services/${args.service}/versions`);
    await page.locator('table.versions').waitFor();
    await go(page, '#/connections');
    await page.locator('table.connections').waitFor();
    await go(page, `#/consumers/${args.consumer}/keys`);
    await page.getByRole('button', { name: 'Create key' }).click();
    await page.locator('.key-once').waitFor();
    await go(page, '#/console');
    await page.locator(`#console-endpoint option[value="${esc(args.endpoint)}"]`).waitFor({ state: 'attached' });
    await page.getByLabel('Endpoint', { exact: true }).selectOption(args.endpoint);
    const connect = page.getByRole('button', { name: 'Connect', exact: true });
    await until(() => connect.isEnabled(), 10000, 'the Connect button');
    await connect.click();
    await page.locator('.console-state', { hasText: 'Connected to' }).waitFor();
    await page.getByRole('button', { name: 'Disconnect' }).click();
    await go(page, '#/config');
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download export' }).click()]);
    const exported = readFileSync(await download.path(), 'utf8');

    const where = [];
    const has = (s) => typeof s === 'string' && s.includes(token);
    for (const r of requests) {
      if (has(r.url)) where.push(`request URL ${r.url}`);
      const sameOrigin = r.url.startsWith(adminOrigin + '/');
      for (const [k, v] of Object.entries(r.headers)) {
        if (!has(v)) continue;
        if (k === 'authorization' && sameOrigin && !r.url.startsWith(adminOrigin + '/ui/')) continue;
        where.push(`header ${k} on ${r.method} ${r.url}`);
      }
    }
    for (const u of sockets) if (has(u)) where.push(`WebSocket URL ${u}`);
    const inPage = await page.evaluate((t) => {
      const found = [];
      if (location.href.includes(t)) found.push('location');
      if (document.documentElement.outerHTML.includes(t)) found.push('DOM');
      if (document.cookie.includes(t)) found.push('cookie');
      for (let i = 0; i < localStorage.length; i++) {
        const k = localStorage.key(i);
        if ((localStorage.getItem(k) || '').includes(t)) found.push(`localStorage ${k}`);
      }
      if (document.referrer.includes(t)) found.push('referrer');
      return found;
    }, token);
    where.push(...inPage);
    if (has(exported)) where.push('the export file');
    const referers = requests.filter((r) => r.headers.referer).map((r) => `${r.url} <- ${r.headers.referer}`);

    // Sign out: the token leaves the tab, and the next call carries none.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Admin token').waitFor();
    const after = await page.evaluate((t) => ({ storage: sessionStorage.getItem('wasp.adminToken'), dom: document.documentElement.outerHTML.includes(t) }), token);
    const n = requests.length;
    await go(page, '#/services');
    await page.waitForTimeout(800);
    const authAfter = requests.slice(n).filter((r) => r.headers.authorization).map((r) => r.url);
    if (after.storage) where.push('sessionStorage after sign-out');
    if (after.dom) where.push('DOM after sign-out');
    for (const u of authAfter) where.push(`Authorization after sign-out on ${u}`);
    return { where, referers, autocomplete, requests: requests.length, sockets };
  },

  // A page on another origin: frames the UI, opens it, tries to reach into it.
  async framing(pw) {
    await launch(pw);
    const context = await browser.newContext();
    const evilUrl = 'http://evil.example/';
    const ui = base + '#/services';
    await context.route(evilUrl + '**', (route) =>
      route.fulfill({
        status: 200,
        contentType: 'text/html',
        body: `<!doctype html><title>evil</title><iframe id="f" src="${ui}" width="800" height="600"></iframe>
          <script>
            window.result = {};
            const w = window.open(${JSON.stringify(ui)}, 'wasp');
            setTimeout(() => {
              const r = window.result;
              try { r.opened_closed = w ? w.closed : 'no window'; } catch (e) { r.opened_closed = 'throws ' + e.name; }
              try { r.opened_doc = !!w.document; } catch (e) { r.opened_doc = 'throws ' + e.name; }
              try { r.opened_storage = w.sessionStorage && w.sessionStorage.getItem('wasp.adminToken'); } catch (e) { r.opened_storage = 'throws ' + e.name; }
              try { w.location.hash = '#/services/+new'; r.navigated = true; } catch (e) { r.navigated = 'throws ' + e.name; }
              try { r.frame_doc = !!document.getElementById('f').contentWindow.document.getElementById('app'); } catch (e) { r.frame_doc = 'throws ' + e.name; }
              r.done = true;
            }, 4000);
          </script>`,
      }),
    );
    const evil = await context.newPage();
    evil.on('pageerror', (e) => log('evil page error', e.message));
    const popups = [];
    context.on('page', (p) => popups.push(p));
    await evil.goto(evilUrl);
    await evil.waitForFunction(() => window.result && window.result.done, null, { timeout: 20000 });
    const result = await evil.evaluate(() => window.result);
    const frame = evil.frames().find((f) => f !== evil.mainFrame());
    const frameUrl = frame ? frame.url() : null;
    const framedApp = frame ? await frame.locator('#app').count().catch(() => 0) : 0;
    // The popup (if any) is the UI in its own browsing context group.
    const pop = popups.find((p) => p !== evil);
    let popupHash = null;
    let popupOpener = null;
    if (pop) {
      await pop.waitForLoadState().catch(() => {});
      popupHash = await pop.evaluate(() => location.hash).catch(() => null);
      popupOpener = await pop.evaluate(() => window.opener !== null).catch(() => null);
    }
    return { result, frame_url: frameUrl, framed_app: framedApp, popup_hash: popupHash, popup_has_opener: popupOpener };
  },

  // "New service" with the name of a live service: PUT replaces it.
  async new_over_existing(pw) {
    need('name', 'instance');
    const page = await openPage(pw);
    await go(page, '#/services/+new');
    await page.getByLabel('Name', { exact: true }).fill(args.name);
    await page.locator('input[data-pointer="/instances/0"]').fill(args.instance);
    await page.getByRole('button', { name: 'Save and apply' }).click();
    const outcome = await Promise.race([
      page.locator('.flash', { hasText: 'Applied' }).waitFor().then(() => 'applied'),
      page.locator('.error-box, .field-error').first().waitFor().then(() => 'refused'),
      page.getByRole('dialog').waitFor().then(() => 'confirm'),
    ]);
    const shown = outcome === 'applied' ? await page.locator('.flash').innerText() : outcome === 'confirm' ? await page.getByRole('dialog').innerText() : await page.locator('.error-box, .field-error').first().innerText();
    log(outcome, shown);
    return { outcome, shown };
  },

  // Tab A opens the editor; tab B (another operator) changes the instances
  // and saves; tab A then changes only the timeout and saves.
  async stale_editor(pw) {
    need('name', 'instance_b');
    await launch(pw);
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const a = await openPage(pw, { context: ctx });
    const b = await openPage(pw, { context: ctx });
    await go(a, `#/services/${args.name}`);
    await a.locator('input[data-pointer="/timeout"]').waitFor();
    await go(b, `#/services/${args.name}`);
    await b.locator('input[data-pointer="/instances/0"]').fill(args.instance_b);
    await b.getByRole('button', { name: 'Save and apply' }).click();
    await b.locator('.success', { hasText: 'Applied' }).waitFor();
    log('tab B saved', await b.locator('.success').innerText());
    await a.locator('input[data-pointer="/timeout"]').fill('9s');
    await a.getByRole('button', { name: 'Save and apply' }).click();
    const outcome = await Promise.race([
      a.locator('.success', { hasText: 'Applied' }).waitFor().then(() => 'applied'),
      a.locator('.error-box').waitFor().then(() => 'refused'),
      a.getByRole('dialog').waitFor().then(() => 'confirm'),
    ]);
    log('tab A:', outcome);
    return { outcome };
  },

  // Edit one unrelated field of a service whose mock answers a 64-bit id.
  async big_integer_edit(pw) {
    need('name', 'pointer', 'value', 'id_text');
    const page = await openPage(pw);
    await go(page, `#/services/${args.name}`);
    await page.locator('.editor fieldset[data-pointer=""]').waitFor();
    await page.getByRole('button', { name: 'JSON', exact: true }).click();
    const text = await page.locator('#json-text').inputValue();
    const json_shows_exact = text.includes(String(args.id_text));
    const m = /"id":\s*(\d+)/.exec(text);
    log('JSON view shows id', m && m[1]);
    await page.getByRole('button', { name: 'Form', exact: true }).click();
    await page.locator(`input[data-pointer="${esc(args.pointer)}"]`).fill(String(args.value));
    await page.getByRole('button', { name: 'Save and apply' }).click();
    await page.locator('.success', { hasText: 'Applied' }).waitFor();
    return { json_shows_exact, json_view_id: m && m[1] };
  },

  async export_download(pw) {
    const page = await openPage(pw, { acceptDownloads: true });
    await go(page, '#/config');
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download export' }).click()]);
    const text = readFileSync(await download.path(), 'utf8');
    log('downloaded', download.suggestedFilename(), text.length, 'bytes');
    return { name: download.suggestedFilename(), text };
  },

  async import_preview(pw) {
    need('document');
    const page = await openPage(pw);
    await go(page, '#/config');
    await page.getByLabel('Configuration file').setInputFiles({ name: 'next.json', mimeType: 'application/json', buffer: Buffer.from(String(args.document)) });
    await page.locator('.import-summary').waitFor();
    const summary = (await page.locator('.import-summary').innerText()).trim();
    log('preview:', summary.replace(/\s+/g, ' '));
    return { summary };
  },

  // The token stops working (the gateway was restarted with another one)
  // just as the operator presses Save on an edit.
  async unsaved_edit_401(pw) {
    need('name', 'pointer', 'value');
    const page = await openPage(pw);
    await go(page, `#/services/${args.name}`);
    const input = page.locator(`input[data-pointer="${esc(args.pointer)}"]`);
    await input.fill(String(args.value));
    await page.getByLabel('Comment').fill('half an hour of careful work');
    // The UI's view of a rotated token: every call now answers 401.
    await page.evaluate(() => sessionStorage.setItem('wasp.adminToken', 'a-token-the-gateway-no-longer-takes'));
    await page.getByRole('button', { name: 'Save and apply' }).click();
    const login = page.getByLabel('Admin token');
    await login.waitFor();
    log('login form shown after the 401');
    await login.fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('.editor fieldset[data-pointer=""]').waitFor();
    const value_after = await page.locator(`input[data-pointer="${esc(args.pointer)}"]`).inputValue();
    const comment_after = await page.getByLabel('Comment').inputValue();
    log('after signing in again:', value_after, '/', comment_after);
    return { value_after, comment_after, kept: value_after === String(args.value) };
  },

  async dot_name(pw) {
    need('name');
    const page = await openPage(pw);
    await go(page, '#/services/+new');
    await page.getByLabel('Name', { exact: true }).fill(args.name);
    const requests = [];
    page.on('request', (r) => r.method() === 'PUT' && requests.push(r.url()));
    await page.getByRole('button', { name: 'Save and apply' }).click();
    const shown = await Promise.race([
      page.locator('#new-name-error').waitFor().then(() => page.locator('#new-name-error').innerText()),
      page.locator('.error-box').waitFor().then(() => page.locator('.error-box').innerText()),
      page.locator('.flash').waitFor().then(() => page.locator('.flash').innerText()),
    ]);
    log('shown:', shown, 'PUT to', requests);
    return { shown, put: requests };
  },

  async non_latin1_token(pw) {
    need('token');
    const page = await openPage(pw, { withToken: false });
    await go(page, '#/dashboard');
    const input = page.getByLabel('Admin token');
    await input.waitFor();
    await input.fill(String(args.token));
    await page.getByRole('button', { name: 'Sign in' }).click();
    const shown = await Promise.race([
      // A token fetch cannot send is refused without a request (no 401 to name).
      page.getByText('That token was refused').waitFor().then(() => 'refused'),
      page.getByText('The gateway did not answer').waitFor().then(() => 'unreachable'),
      page.getByRole('heading', { name: 'Dashboard', level: 1 }).waitFor().then(() => 'signed in'),
    ]);
    await page.waitForTimeout(300);
    const banner = await page.locator('.banner').count();
    const bannerText = banner ? await page.locator('.banner').innerText() : null;
    log(shown, bannerText);
    return { shown, banner: bannerText };
  },

  async huge_import(pw) {
    need('mb');
    const page = await openPage(pw);
    await go(page, '#/config');
    const big = 'x'.repeat(Math.round(Number(args.mb) * 1024 * 1024));
    const doc = JSON.stringify({ services: { big: { instances: [], mock: { routes: [{ body: big }] } } } });
    await page.getByLabel('Configuration file').setInputFiles({ name: 'big.json', mimeType: 'application/json', buffer: Buffer.from(doc) });
    const err = page.locator('.error-box, p.error').first();
    await err.waitFor({ timeout: 30000 });
    const message = (await err.innerText()).trim();
    await page.waitForTimeout(500);
    const banner = (await page.locator('.banner').count()) ? await page.locator('.banner').innerText() : null;
    log('shown:', message, '| banner:', banner);
    return { message, banner };
  },

  // The charts while the busiest services change: the gateway sends at most
  // max_series per answer; the page must not keep every name it ever saw.
  async dashboard_series(pw) {
    const timeoutS = Number(args.timeout_s || 30);
    const page = await openPage(pw);
    let answerMax = 0;
    page.on('response', async (r) => {
      if (!r.url().includes('/stats')) return;
      try {
        const j = await r.json();
        answerMax = Math.max(answerMax, Object.keys((j.series && j.series.services) || {}).length);
      } catch {
        /* not JSON */
      }
    });
    await go(page, '#/dashboard');
    await page.locator('table.services tbody tr[data-service]').first().waitFor();
    console.log('READY');
    const legend = page.locator('figure.chart', { hasText: 'Requests per second by service' }).locator('ul.legend li');
    let most = 0;
    const end = Date.now() + timeoutS * 1000;
    while (Date.now() < end) {
      most = Math.max(most, await legend.count());
      if (most > Number(args.max_series || 50) + 10) break;
      await page.waitForTimeout(1000);
    }
    const paths = await page.locator('figure.chart path.line').count();
    // What one re-render of the dashboard costs now.
    const renderMs = await page.evaluate(async () => {
      const t0 = performance.now();
      document.querySelector('button[aria-pressed]').click();
      await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
      const t1 = performance.now();
      document.querySelector('button[aria-pressed]').click();
      return t1 - t0;
    });
    log(`legend entries ${most}, paths ${paths}, most series in one answer ${answerMax}, a re-render ${renderMs.toFixed(0)} ms`);
    return { legend_max: most, answer_max: answerMax, paths, render_ms: renderMs };
  },

  // Back and forth between the dashboard and another view: every timer of
  // the dashboard must stop with it.
  async dashboard_timers(pw) {
    const rounds = Number(args.rounds || 30);
    const page = await openPage(pw);
    const stats = [];
    page.on('request', (r) => r.url().includes('/stats') && stats.push(Date.now()));
    for (let i = 0; i < rounds; i++) {
      await go(page, '#/dashboard');
      await page.locator('table.services').waitFor();
      await go(page, '#/services');
      await page.locator('table.entities').waitFor();
    }
    await page.waitForTimeout(1500);
    const from = Date.now();
    await page.waitForTimeout(5000);
    const away = stats.filter((t) => t >= from).length;
    await go(page, '#/dashboard');
    await page.locator('table.services').waitFor();
    const on = Date.now();
    await page.waitForTimeout(5000);
    const onDash = stats.filter((t) => t >= on).length;
    log(`/stats calls: ${away} in 5 s away from the dashboard, ${onDash} in 5 s on it`);
    return { away, on_dashboard: onDash };
  },

  async many_services(pw) {
    need('count');
    const page = await openPage(pw);
    const t0 = Date.now();
    await go(page, '#/dashboard');
    await until(async () => (await page.locator('table.services tbody tr[data-service]').count()) >= Number(args.count), 60000, 'every row');
    const firstMs = Date.now() - t0;
    await page.evaluate(() => {
      window.__long = 0;
      new PerformanceObserver((l) => {
        for (const e of l.getEntries()) window.__long += e.duration;
      }).observe({ type: 'longtask' });
    });
    await page.waitForTimeout(10000);
    const longMs = await page.evaluate(() => window.__long);
    const pause = page.getByRole('button', { name: 'Pause' });
    const c0 = Date.now();
    await pause.click();
    await page.getByRole('button', { name: 'Resume' }).waitFor();
    const clickMs = Date.now() - c0;
    await go(page, '#/services');
    await page.locator('table.entities tbody tr[data-name]').first().waitFor();
    const f0 = Date.now();
    await page.getByLabel('Filter').pressSequentially('svc-19', { delay: 0 });
    await until(async () => (await page.locator('table.entities tbody tr[data-name]').count()) <= 111, 20000, 'the filtered list');
    const filterMs = Date.now() - f0;
    log(`dashboard first ${firstMs} ms, long tasks ${longMs.toFixed(0)} ms in 10 s, Pause ${clickMs} ms, filter ${filterMs} ms`);
    return { first_ms: firstMs, long_ms_per_10s: longMs, click_ms: clickMs, filter_ms: filterMs };
  },

  async console_flood(pw) {
    need('endpoint', 'count');
    const page = await openPage(pw);
    const last = `#${Number(args.count) - 1}#`;
    let frames = 0;
    let firstFrameAt = null;
    let lastFrameAt = null;
    page.on('websocket', (ws) =>
      ws.on('framereceived', (f) => {
        if (!String(f.payload).includes('"n":"#')) return;
        frames++;
        firstFrameAt = firstFrameAt || Date.now();
        if (String(f.payload).includes(last)) lastFrameAt = Date.now();
      }),
    );
    await go(page, '#/console');
    await page.locator(`#console-endpoint option[value="${esc(args.endpoint)}"]`).waitFor({ state: 'attached' });
    await page.getByLabel('Endpoint', { exact: true }).selectOption(args.endpoint);
    const connect = page.getByRole('button', { name: 'Connect', exact: true });
    await until(() => connect.isEnabled(), 10000, 'the Connect button');
    await connect.click();
    await page.locator('.console-state', { hasText: 'Connected to' }).waitFor();
    await page.evaluate(() => {
      window.__long = 0;
      window.__longest = 0;
      new PerformanceObserver((l) => {
        for (const e of l.getEntries()) {
          window.__long += e.duration;
          window.__longest = Math.max(window.__longest, e.duration);
        }
      }).observe({ type: 'longtask' });
    });
    const t0 = Date.now();
    console.log('READY');
    // The last message shown, or the console's socket closed under it.
    const outcome = await Promise.race([
      page.locator('.console-log li.in', { hasText: last }).waitFor({ timeout: 150000 }).then(() => 'all shown'),
      page.locator('.console-state', { hasText: 'Closed' }).waitFor({ timeout: 150000 }).then(() => 'closed'),
    ]);
    const shownAt = Date.now();
    const state = (await page.locator('.console-state').innerText()).trim();
    const lines = await page.locator('.console-log li').count();
    const c0 = Date.now();
    await page.getByRole('button', { name: 'Clear log' }).click();
    await until(async () => (await page.locator('.console-log li').count()) === 0, 30000, 'the cleared log');
    const clearMs = Date.now() - c0;
    const [longMs, longest] = await page.evaluate(() => [window.__long, window.__longest]);
    const lastMs = shownAt - t0;
    const spreadMs = lastFrameAt && firstFrameAt ? lastFrameAt - firstFrameAt : null;
    const perMsg = frames ? (shownAt - (firstFrameAt || t0)) / frames : null;
    log(`${outcome} after ${lastMs} ms: ${frames} frames over ${spreadMs} ms (${perMsg && perMsg.toFixed(1)} ms each); state "${state}"; long tasks ${longMs.toFixed(0)} ms (longest ${longest.toFixed(0)}); ${lines} lines; Clear ${clearMs} ms`);
    return { outcome, state, ws_errors: wsErrors, frames, last_ms: lastMs, spread_ms: spreadMs, ms_per_message: perMsg, long_ms: longMs, longest_ms: longest, clear_ms: clearMs, lines };
  },

  // Many open connections: pages of 50 through the gateway's cursor, no
  // duplicates, Next off on the last page, Previous back.
  async connections_paging(pw) {
    need('total');
    const page = await openPage(pw);
    await go(page, '#/connections');
    const rows = page.locator('table.connections tbody tr[data-connection]');
    await rows.first().waitFor();
    const seen = new Set();
    const sizes = [];
    const next = page.getByRole('button', { name: 'Next page' });
    for (let i = 0; i < 10; i++) {
      await until(async () => (await page.locator('table.connections caption').innerText()).startsWith(`Page ${i + 1}:`), 10000, `page ${i + 1}`);
      const ids = await rows.evaluateAll((els) => els.map((e) => e.getAttribute('data-connection')));
      sizes.push(ids.length);
      for (const id of ids) seen.add(id);
      if (!(await next.isEnabled())) break;
      // Waits for the page's own answer (while it is on its way the view
      // says it is loading: connections_stale).
      await Promise.all([page.waitForResponse((r) => r.url().includes('/connections?')), next.click()]);
      await page.waitForTimeout(200);
    }
    await Promise.all([
      page.waitForResponse((r) => r.url().includes('/connections?')),
      page.getByRole('button', { name: 'Previous page' }).click(),
    ]);
    await page.waitForTimeout(200);
    const back = (await page.locator('table.connections caption').innerText()).trim();
    log('pages', sizes, 'distinct', seen.size, '|', back);
    return { sizes, distinct: seen.size, back };
  },

  // A gateway answering the connection list slowly (1.5 s): what the page
  // shows between a click on Next and the answer, and after two quick clicks.
  async connections_stale(pw) {
    const page = await openPage(pw);
    await page.route('**/connections?*', async (route) => {
      await new Promise((r) => setTimeout(r, 1500));
      await route.continue();
    });
    const rows = page.locator('table.connections tbody tr[data-connection]');
    const caption = page.locator('table.connections caption');
    const ids = () => rows.evaluateAll((els) => els.map((e) => e.getAttribute('data-connection')));
    const settle = () => page.waitForTimeout(2500);
    await go(page, '#/connections');
    await rows.first().waitFor();
    await settle();
    const page1 = await ids();
    await page.getByRole('button', { name: 'Next page' }).click();
    await page.waitForTimeout(300);
    const during = { caption: (await caption.innerText()).trim(), same_rows_as_page_1: JSON.stringify(await ids()) === JSON.stringify(page1) };
    await settle();
    const page2 = await ids();
    // Two clicks on Next while the first answer is on its way.
    const next = page.getByRole('button', { name: 'Next page' });
    await next.click();
    await page.waitForTimeout(200);
    const secondEnabled = await next.isEnabled();
    if (secondEnabled) await next.click();
    await settle();
    await settle();
    const after = { caption: (await caption.innerText()).trim(), same_rows_as_page_2: JSON.stringify(await ids()) === JSON.stringify(page2), rows: (await ids()).length };
    log('while loading:', JSON.stringify(during), '| after two clicks:', JSON.stringify(after));
    return { during, after, second_click_enabled: secondEnabled };
  },

  async large_version(pw) {
    need('name', 'from', 'to');
    const page = await openPage(pw);
    const t0 = Date.now();
    await go(page, `#/services/${args.name}/versions`);
    await page.locator('table.diff tbody tr').first().waitFor({ timeout: 60000 });
    const diffMs = Date.now() - t0;
    const rows = await page.locator('table.diff tbody tr').count();
    const e0 = Date.now();
    await go(page, `#/services/${args.name}`);
    await page.locator('.editor fieldset[data-pointer=""]').waitFor({ timeout: 60000 });
    const formMs = Date.now() - e0;
    // Keys typed into the comment: how long each takes to show, measured in
    // the page (the input event, whatever it re-renders, the next frame).
    const comment = page.locator('#editor-comment');
    await comment.focus();
    const typeMs = await page.evaluate(async () => {
      const el = document.getElementById('editor-comment');
      const times = [];
      for (const ch of 'abc') {
        const t0 = performance.now();
        el.value += ch;
        el.dispatchEvent(new Event('input', { bubbles: true }));
        await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
        times.push(performance.now() - t0);
      }
      return times.reduce((a, b) => a + b, 0) / times.length;
    });
    const typed = await comment.inputValue();
    if (typed !== 'abc') throw new Error(`the comment shows "${typed}"`);
    log(`diff ${rows} rows in ${diffMs} ms; form in ${formMs} ms; ${typeMs.toFixed(0)} ms per key`);
    return { diff_ms: diffMs, diff_rows: rows, form_ms: formMs, key_ms: typeMs };
  },

  // A gateway (or a proxy in front of it) answering 502 HTML, 500 text and
  // slowly: said in words, no page error, and the views recover.
  async gateway_errors(pw) {
    need('service');
    const page = await openPage(pw);
    let broken = true;
    await page.route('**/stats*', (route) =>
      broken ? route.fulfill({ status: 502, contentType: 'text/html', body: '<html><body><h1 data-pwn>502 Bad Gateway</h1></body></html>' }) : route.continue(),
    );
    await page.route('**/services', (route) => route.fulfill({ status: 200, contentType: 'text/html', body: '<html>not json</html>' }));
    await page.route(`**/services/${args.service}`, async (route) => {
      await new Promise((r) => setTimeout(r, 3000));
      await route.continue();
    });
    await go(page, '#/dashboard');
    const dashErr = page.locator('p.error', { hasText: 'did not answer' });
    await dashErr.waitFor();
    const dashText = await dashErr.innerText();
    broken = false;
    await page.locator('table.services').waitFor({ timeout: 15000 });
    const recovered = !(await dashErr.count());
    await go(page, '#/services');
    await page.locator('table.entities').waitFor();
    const listText = (await page.locator('table.entities caption').innerText()).trim();
    await go(page, `#/services/${args.service}`);
    const loading = await page.getByText(`Loading service ${args.service}`).isVisible();
    await page.locator('.editor fieldset[data-pointer=""]').waitFor({ timeout: 15000 });
    const marked = await page.locator('[data-pwn]').count();
    log(`dashboard: "${dashText}", recovered ${recovered}; list "${listText}"; slow load shown ${loading}`);
    return { dashboard_error: dashText, recovered, list_caption: listText, slow_loading_shown: loading, marked };
  },
};

(async () => {
  const run = scenarios[scenario];
  if (!run) return fail(`unknown scenario "${scenario}"; one of: ${Object.keys(scenarios).join(', ')}`);
  log('scenario', scenario, 'at', base);
  const result = await run(loadPlaywright());
  if (csp.length) return fail(`CSP violations: ${csp.join(' | ')}`);
  await ok(result);
})().catch((e) => fail(e && e.message ? e.message : e));
