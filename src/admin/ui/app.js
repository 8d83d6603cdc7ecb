// app.js: the page's frame: hash routing, navigation, the login form, the
// "cannot reach the gateway" banner and success messages carried across a
// navigation. Each view lives in its own module.

import { render } from './vendor/preact.module.js';
import { useState, useEffect, useRef } from './vendor/hooks.module.js';
import { html, api, useStatus, getToken, setToken, signOut, checkToken, clearFlash } from './api.js';
import { Dashboard } from './dashboard.js';
import { EntityList, EntityNew, EntityDetail } from './entities.js';
import { Connections } from './connections.js';
import { Console } from './console.js';
import { Transfer } from './transfer.js';

const KINDS = ['services', 'endpoints', 'consumers'];
const NAV = [
  ['dashboard', 'Dashboard'],
  ['services', 'Services'],
  ['endpoints', 'Endpoints'],
  ['consumers', 'Consumers'],
  ['connections', 'Connections'],
  ['console', 'Console'],
  ['config', 'Config'],
];

/** The current hash split into decoded path segments: "#/services/a" → ["services","a"]. */
function segments(hash) {
  const path = hash.replace(/^#\/?/, '');
  if (!path) return [];
  return path.split('/').map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
}

function useHash() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const f = () => setHash(location.hash);
    addEventListener('hashchange', f);
    return () => removeEventListener('hashchange', f);
  }, []);
  return hash;
}

/** Which view a route shows; `key` remounts the view when the route changes. */
function view(seg) {
  const [top, name, tab, ...rest] = seg;
  if (seg.length === 0 || (top === 'dashboard' && seg.length === 1)) return html`<${Dashboard} />`;
  if (KINDS.includes(top)) {
    if (name === undefined) return html`<${EntityList} kind=${top} />`;
    if (name === '+new' && tab === undefined) return html`<${EntityNew} kind=${top} />`;
    const tabs = ['edit', 'versions', ...(top === 'services' ? ['instances'] : []), ...(top === 'consumers' ? ['keys'] : [])];
    if (rest.length === 0 && (tab === undefined || tabs.includes(tab)))
      return html`<${EntityDetail} kind=${top} name=${name} tab=${tab || 'edit'} />`;
  }
  if (top === 'connections' && seg.length === 1) return html`<${Connections} />`;
  if (top === 'console' && seg.length === 1) return html`<${Console} />`;
  if (top === 'config' && seg.length === 1) return html`<${Transfer} />`;
  return html`<${NotFound} />`;
}

function NotFound() {
  return html`<section>
    <h1>Not found</h1>
    <p>There is no page at <code>${location.hash}</code>.</p>
    <p><a href="#/dashboard">Go to the dashboard</a></p>
  </section>`;
}

function Login() {
  const [token, setTok] = useState('');
  const [state, setState] = useState(null); // null | 'checking' | 'refused' | 'unsendable' | 'unreachable'
  const input = useRef(null);
  useEffect(() => input.current && input.current.focus(), []);
  const submit = async (e) => {
    e.preventDefault();
    setState('checking');
    const code = await checkToken(token.trim());
    if (code === 401 || code === -1) {
      setState(code === 401 ? 'refused' : 'unsendable');
      input.current && input.current.select();
    } else if (code === 0) {
      setState('unreachable');
    } else {
      setState(null);
      setToken(token.trim());
    }
  };
  const refused = state === 'refused' || state === 'unsendable';
  return html`<section class="login">
    <h1>Sign in</h1>
    <p>The gateway's admin API needs its token (the <code>admin.token</code> setting or <code>WASP_ADMIN_TOKEN</code>).
      It is kept in this tab only (sessionStorage).</p>
    <form onSubmit=${submit} class="stack">
      <label for="login-token">Admin token</label>
      <input id="login-token" ref=${input} type="password" autocomplete="off" value=${token}
        aria-invalid=${refused ? 'true' : undefined}
        aria-describedby=${refused ? 'login-error' : undefined}
        onInput=${(e) => setTok(e.currentTarget.value)} />
      ${state === 'refused' && html`<p id="login-error" class="error" role="alert">That token was refused (401).</p>`}
      ${state === 'unsendable' &&
      html`<p id="login-error" class="error" role="alert">That token was refused: it holds a character an HTTP header
        cannot carry (only ISO-8859-1), so it is not the gateway's token. Nothing was sent.</p>`}
      ${state === 'unreachable' && html`<p class="error" role="alert">The gateway did not answer; try again.</p>`}
      <div><button type="submit" class="primary" disabled=${state === 'checking'}>Sign in</button></div>
    </form>
  </section>`;
}

function App() {
  const hash = useHash();
  const st = useStatus();
  const main = useRef(null);
  const first = useRef(true);
  const seg = segments(hash);
  const section = seg[0] || 'dashboard';

  // A flash message belongs to the route it was made for; leaving it drops it.
  useEffect(() => {
    if (st.flash && st.flash.route !== hash) clearFlash();
    // After a navigation (not the first load) move focus to the new view so
    // keyboard and screen-reader users start at its top.
    if (first.current) first.current = false;
    else if (main.current) main.current.focus({ preventScroll: false });
  }, [hash]);

  // One cheap authenticated call at start, so a page that loads nothing by
  // itself (Config, Console) still asks for the token at once.
  useEffect(() => {
    api('GET', '/connections?limit=1').catch(() => {});
  }, []);

  const title = (NAV.find(([k]) => k === section) || [null, 'wasp'])[1];
  useEffect(() => {
    document.title = `${title} · wasp admin`;
  }, [title]);

  const hasToken = !!getToken();
  // A 401 hides the view behind the login form but keeps it mounted: an
  // edit in progress (and its comment) is still there after signing in
  // again, and the loads the gateway refused run again then (useLoad).
  // Signing out starts the views over: nothing of the old session stays.
  return html`
    <a class="skip" href="#main" onClick=${(e) => {
      e.preventDefault();
      main.current && main.current.focus();
    }}>Skip to content</a>
    <header class="top">
      <a class="brand" href="#/dashboard" aria-label="wasp admin: dashboard"><img src="favicon.svg" alt="" width="24" height="24" /> wasp</a>
      <nav id="nav" aria-label="Main">
        <ul>
          ${NAV.map(
            ([k, label]) => html`<li><a href=${'#/' + k} aria-current=${section === k ? 'page' : undefined}>${label}</a></li>`,
          )}
        </ul>
      </nav>
      ${hasToken &&
      !st.needLogin &&
      html`<button type="button" class="signout" onClick=${() => signOut()}>Sign out</button>`}
    </header>
    ${st.unreachable &&
    html`<div class="banner" role="alert">Cannot reach the gateway: ${st.unreachable}. Retrying…</div>`}
    <main id="main" ref=${main} tabindex="-1">
      ${st.flash && st.flash.route === hash && html`<p class="flash" role="status" data-version=${st.flash.version}>${st.flash.text}</p>`}
      ${st.needLogin && html`<${Login} />`}
      <div key=${hash + '|' + st.session} hidden=${st.needLogin}>${view(seg)}</div>
    </main>`;
}

// The boot text in index.html is what shows if this module fails to load;
// Preact would keep it beside the app, so it goes first.
const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
