// api.js: talking to the admin API, and the few pieces every view shares
// (htm binding, dialogs, time and number formatting, a tiny status store).
//
// The UI is served by the admin listener itself (/ui/), so the API is the
// page's own origin: paths below are absolute (/services/...), never
// relative to /ui/.

import { h } from './vendor/preact.module.js';
import { useState, useEffect, useRef } from './vendor/hooks.module.js';
import htm from './vendor/htm.module.js';
import { parse, stringify } from './json.js';

export const html = htm.bind(h);

// ---------------------------------------------------------------------------
// Status shared by the whole page: the login form and the "cannot reach"
// banner. Views never handle 401 or network failures themselves beyond
// showing their own error text; app.js reacts to this store.

const TOKEN_KEY = 'wasp.adminToken';

export const status = {
  needLogin: false, // an API call answered 401
  signIns: 0, // counts sign-ins: a load refused with 401 tries again after one
  session: 0, // counts sign-outs: the views start over (nothing of the old session stays)
  unreachable: null, // the text of the last network failure, or null
  flash: null, // {text, route}: a success message carried across a navigation
};
const listeners = new Set();
function emit() {
  for (const f of listeners) f();
}

/** Re-renders the calling component whenever the status store changes. */
export function useStatus() {
  const [, bump] = useState(0);
  useEffect(() => {
    const f = () => bump((n) => n + 1);
    listeners.add(f);
    return () => listeners.delete(f);
  }, []);
  return status;
}

// sessionStorage only: the token lives as long as the tab, never on disk
// across browser restarts, and is not shared with other tabs.
export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}
export function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token is simply not kept */
  }
  if (status.needLogin && t) status.signIns++;
  status.needLogin = false;
  emit();
}
export function signOut() {
  setToken('');
  status.session++;
  // With a token on the gateway the next call answers 401 and the login form
  // shows; without one there is nothing to sign out of and the views go on.
  status.needLogin = true;
  emit();
}

// fetch refuses a header value outside ISO-8859-1 (or with a line break)
// with a TypeError before anything is sent. No admin token looks like that
// (a character pasted from a document), so such a token is a wrong token,
// said so, and never taken for the gateway being down.
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
export const tokenSendable = (t) => HEADER_VALUE.test(t);

/**
 * Asks the gateway whether `token` is accepted, without storing it:
 * resolves to the HTTP status (0 when unreachable, -1 when the token cannot
 * be sent in a header at all).
 */
export async function checkToken(token) {
  if (!tokenSendable(token)) return -1;
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = 'Bearer ' + token;
  try {
    const r = await fetch('/connections?limit=1', { headers, cache: 'no-store' });
    setUnreachable(null);
    return r.status;
  } catch (e) {
    setUnreachable((e && e.message) || String(e));
    return 0;
  }
}

/** A message shown once the page is at `route` (a hash such as #/services/a). */
export function flash(text, route, version) {
  status.flash = { text, route, version };
  emit();
}
export function clearFlash() {
  if (status.flash) {
    status.flash = null;
    emit();
  }
}

// While the gateway is unreachable, ask /healthz (no token, no Host rule)
// every 2 s so the banner goes away on its own once it answers again, even
// on a view that makes no further calls.
let healthTimer = null;
function setUnreachable(text) {
  if (status.unreachable === text) return;
  status.unreachable = text;
  emit();
  if (text && !healthTimer) {
    healthTimer = setInterval(async () => {
      try {
        const r = await fetch('/healthz', { cache: 'no-store' });
        if (r.status < 500) setUnreachable(null);
      } catch {
        /* still down */
      }
    }, 2000);
  } else if (!text && healthTimer) {
    clearInterval(healthTimer);
    healthTimer = null;
  }
}

export class ApiError extends Error {
  constructor(status, code, message, pointer, body) {
    super(message);
    this.status = status; // 0 = the gateway could not be reached
    this.code = code;
    this.pointer = pointer; // RFC 6901 pointer of a 422, else undefined
    this.body = body;
  }
}

function askForLogin() {
  if (!status.needLogin) {
    status.needLogin = true;
    emit();
  }
}

// fetch sends a header value's characters as single bytes and refuses any
// above U+00FF; the gateway reads header bytes as UTF-8. So the comment's
// UTF-8 bytes go out one character each ("é" as "\xc3\xa9"): any language
// arrives as typed. Control characters (CR, LF) cannot be in a header and
// become spaces; the gateway keeps 1,024 characters.
export function headerSafe(text) {
  const chars = Array.from(String(text).replace(/[\x00-\x1f\x7f]/g, ' ')).slice(0, 1024);
  let out = '';
  for (const b of new TextEncoder().encode(chars.join(''))) out += String.fromCharCode(b);
  return out;
}

/**
 * One API call. `body`: an object (sent as JSON, numbers exactly as
 * json.js holds them) or a string (sent as is); every request with a body
 * says Content-Type: application/json (the gateway refuses other writes
 * with 415 when it has no token). `comment` adds X-Wasp-Comment; every
 * write says X-Wasp-Author: ui; `headers` adds others (If-Match).
 * Resolves to the parsed JSON (`lossless`: with json.js, for configuration
 * whose numbers must come back unchanged), or the text (`text`); rejects
 * with an ApiError.
 */
export async function api(method, path, { body, comment, text = false, lossless = false, headers: extra } = {}) {
  const headers = { Accept: 'application/json', ...extra };
  const token = getToken();
  if (token && !tokenSendable(token)) {
    askForLogin();
    throw new ApiError(401, 'unauthorized', 'The admin token holds a character an HTTP header cannot carry: sign in again');
  }
  if (token) headers.Authorization = 'Bearer ' + token;
  let payload;
  if (method !== 'GET' && method !== 'HEAD') {
    headers['Content-Type'] = 'application/json';
    headers['X-Wasp-Author'] = 'ui';
    if (comment) headers['X-Wasp-Comment'] = headerSafe(comment);
    if (body !== undefined) payload = typeof body === 'string' ? body : stringify(body);
    else if (method !== 'DELETE') payload = '{}';
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload, cache: 'no-store' });
  } catch (e) {
    const why = (e && e.message) || String(e);
    setUnreachable(why);
    throw new ApiError(0, 'unreachable', 'Cannot reach the gateway: ' + why);
  }
  setUnreachable(null);
  const raw = await res.text().catch(() => '');
  let data = raw;
  // An error's body is read for its message even when the caller wants text.
  if (!text || !res.ok) {
    try {
      data = raw ? (lossless && res.ok ? parse(raw) : JSON.parse(raw)) : null;
    } catch {
      data = raw;
    }
  }
  if (res.status === 401) {
    askForLogin();
    throw new ApiError(401, 'unauthorized', 'The gateway asks for the admin token (401)');
  }
  if (!res.ok) {
    const obj = data && typeof data === 'object' ? data : {};
    const msg = obj.message || (typeof data === 'string' && data.trim()) || `HTTP ${res.status}`;
    throw new ApiError(res.status, obj.error, msg, obj.pointer, data);
  }
  return data;
}

export const enc = encodeURIComponent;

// ---------------------------------------------------------------------------
// Hooks and small components used by several views.

/**
 * Loads `fn()` (a promise) when `deps` change; returns
 * {data, error, loading, reload}. A late answer for old deps is dropped.
 */
export function useLoad(fn, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const [tick, setTick] = useState(0);
  // A load the gateway refused with 401 runs again once the operator has
  // signed in (the view stays mounted behind the login form).
  const { signIns } = useStatus();
  const refused = state.error && state.error.status === 401;
  const [retriedAt, setRetriedAt] = useState(signIns);
  useEffect(() => {
    if (refused && signIns !== retriedAt) {
      setRetriedAt(signIns);
      setTick((n) => n + 1);
    }
  }, [signIns, refused]);
  useEffect(() => {
    let live = true;
    setState((s) => ({ data: s.data, error: null, loading: true }));
    fn().then(
      (data) => live && setState({ data, error: null, loading: false }),
      (error) => live && setState({ data: null, error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return { ...state, reload: () => setTick((n) => n + 1) };
}

/** "Loading…" / the error in words / nothing, for a useLoad result. */
export function LoadState({ load, what }) {
  if (load.error) return html`<${ErrorText} error=${load.error} />`;
  if (load.loading && !load.data) return html`<p class="muted" role="status">Loading ${what}…</p>`;
  return null;
}

export function ErrorText({ error, prefix }) {
  if (!error) return null;
  const msg = error instanceof ApiError ? error.message : (error && error.message) || String(error);
  return html`<p class="error" role="alert">${prefix ? prefix + ': ' : ''}${msg}</p>`;
}

/**
 * A modal <dialog> (showModal: focus trapped, Escape closes via the
 * 'cancel' event, which we route to onClose so Preact stays the owner).
 */
export function Dialog({ title, onClose, children, wide }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    const cancel = (e) => {
      e.preventDefault();
      onClose();
    };
    d.addEventListener('cancel', cancel);
    return () => {
      d.removeEventListener('cancel', cancel);
      if (d.open) d.close();
    };
  }, []);
  return html`<dialog ref=${ref} class=${wide ? 'wide' : ''} aria-labelledby="dialog-title">
    <h2 id="dialog-title">${title}</h2>
    ${children}
  </dialog>`;
}

/**
 * A confirmation dialog: `onConfirm` returns a promise; while it runs the
 * buttons are disabled; its error is shown inside the dialog.
 */
export function Confirm({ title, body, confirmLabel, onConfirm, onClose, danger }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const go = async () => {
    setBusy(true);
    setError(null);
    try {
      await onConfirm();
      onClose(true);
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return html`<${Dialog} title=${title} onClose=${() => onClose(false)}>
    ${body && html`<p>${body}</p>`}
    <${ErrorText} error=${error} />
    <div class="buttons">
      <button type="button" class=${danger ? 'danger' : 'primary'} onClick=${go} disabled=${busy}>${confirmLabel}</button>
      <button type="button" onClick=${() => onClose(false)} disabled=${busy} autofocus=${!!danger}>Cancel</button>
    </div>
  </${Dialog}>`;
}

// ---------------------------------------------------------------------------
// Formatting.

const pad = (n) => String(n).padStart(2, '0');

/** Local "YYYY-MM-DD HH:MM:SS". */
export function absTime(ms) {
  if (ms == null) return '—';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function clockTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "5 s ago", "3 min ago", "2 h ago", "4 d ago". */
export function relTime(ms, now = Date.now()) {
  if (ms == null) return '—';
  const s = Math.round((now - ms) / 1000);
  if (s < 0) return 'in the future';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** A time shown relative, with the absolute one as text beside it. */
export function Time({ ms, compact }) {
  if (ms == null) return html`<span>—</span>`;
  if (compact) return html`<time datetime=${new Date(ms).toISOString()} title=${absTime(ms)}>${relTime(ms)}</time>`;
  return html`<time datetime=${new Date(ms).toISOString()} title=${absTime(ms)}>${relTime(ms)} <span class="muted">(${absTime(ms)})</span></time>`;
}

export function num(x, digits = 1) {
  if (x == null || Number.isNaN(x)) return '—';
  return Number(x).toFixed(digits);
}

export function ms(x) {
  if (x == null) return '—';
  return x < 10 ? `${x.toFixed(2)} ms` : `${x.toFixed(1)} ms`;
}

/** Singular entity word for a kind ("services" → "service"). */
export function singular(kind) {
  return kind.replace(/s$/, '');
}
