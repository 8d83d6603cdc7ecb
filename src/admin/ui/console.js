// console.js: a WebSocket test console. The socket goes to the gateway's
// public listener (its port from /stats gateway.listen; its host is always
// this page's, since the listener may be bound to 0.0.0.0); the CSP's
// connect-src allows that one origin and no other (src/admin/assets.rs).

import { useState, useEffect, useRef } from './vendor/hooks.module.js';
import { html, api, enc, useLoad, ErrorText, clockTime } from './api.js';
import { listEntities } from './entities.js';

const MAX_LINES = 500;
const DRAW_MS = 100;
const MAX_WAIT_MS = 1000;
const DIR = {
  out: ['→', 'sent'],
  in: ['←', 'received'],
  state: ['•', 'state'],
};

/** The port of a listen address: "0.0.0.0:8080" → "8080", "[::]:80" → "80". */
function portOf(listen) {
  const m = /:(\d+)$/.exec(listen || '');
  return m ? m[1] : null;
}

export function Console() {
  const endpoints = useLoad(() => listEntities('endpoints'), []);
  const stats = useLoad(() => api('GET', '/stats'), []);
  const [endpoint, setEndpoint] = useState('');
  const [query, setQuery] = useState('');
  const [protocols, setProtocols] = useState('');
  const [event, setEvent] = useState('');
  const [state, setState] = useState('Not connected.');
  const [open, setOpen] = useState(false);
  const [err, setErr] = useState(null);
  const ws = useRef(null);
  const logRef = useRef(null);
  const seq = useRef(0);
  // The log is a plain array, drawn once messages pause for DRAW_MS, and
  // during a stream at most every MAX_WAIT_MS (longer if a draw is slow):
  // a burst of thousands of messages must cost a push each, not a
  // re-render of 500 lines each, or the browser stops reading the socket
  // and the gateway closes the console as a slow reader.
  const lines = useRef([]);
  const [drawn, setDrawn] = useState(0);
  const pending = useRef({ timer: null, first: 0, last: 0, since: 0, cost: 0 });

  const names = ((endpoints.data && endpoints.data.items) || []).map((e) => e.name).sort();
  useEffect(() => {
    if (!endpoint && names.length) setEndpoint(names[0]);
  }, [endpoints.data]);

  // Closing the view closes the socket (and stops a pending redraw).
  useEffect(
    () => () => {
      if (ws.current) ws.current.close(1000, 'console closed');
      clearTimeout(pending.current.timer);
    },
    [],
  );
  useEffect(() => {
    if (logRef.current) logRef.current.scrollTop = logRef.current.scrollHeight; // lays out: part of the cost
    const p = pending.current;
    if (p.since) p.cost = performance.now() - p.since;
    p.since = 0;
  }, [drawn]);

  const flush = () => {
    const p = pending.current;
    const now = performance.now();
    if (now - p.last < DRAW_MS && now - p.first < Math.max(MAX_WAIT_MS, 5 * p.cost)) {
      p.timer = setTimeout(flush, DRAW_MS);
      return;
    }
    p.timer = null;
    p.since = now;
    setDrawn((n) => n + 1);
  };
  const log = (dir, text) => {
    const ls = lines.current;
    ls.push({ id: seq.current++, dir, text, t: Date.now() });
    // Trimmed in chunks, not one shift per message.
    if (ls.length > 2 * MAX_LINES) ls.splice(0, ls.length - MAX_LINES);
    const p = pending.current;
    p.last = performance.now();
    if (p.timer == null) {
      p.first = p.last;
      p.timer = setTimeout(flush, DRAW_MS);
    }
  };
  const clear = () => {
    lines.current = [];
    setDrawn((n) => n + 1);
  };
  const shown = lines.current.length > MAX_LINES ? lines.current.slice(-MAX_LINES) : lines.current;

  const pathOf = async (name) => {
    const st = stats.data && (stats.data.endpoints || []).find((e) => e.name === name);
    if (st && st.path) return st.path;
    const r = await api('GET', `/endpoints/${enc(name)}`);
    return r.content && r.content.path;
  };

  const connect = async (e) => {
    e.preventDefault();
    setErr(null);
    const port = stats.data && portOf(stats.data.gateway && stats.data.gateway.listen);
    if (!port) return setErr(new Error('The public listener’s port is unknown (GET /stats did not answer).'));
    let path;
    try {
      path = await pathOf(endpoint);
    } catch (x) {
      return setErr(x);
    }
    if (!path) return setErr(new Error(`Endpoint ${endpoint} has no path.`));
    let q = query.trim();
    if (q && !q.startsWith('?')) q = '?' + q;
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const url = scheme + location.hostname + ':' + port + path + q;
    const protos = protocols
      .split(',')
      .map((p) => p.trim())
      .filter(Boolean);
    if (ws.current) ws.current.close(1000);
    let sock;
    try {
      sock = protos.length ? new WebSocket(url, protos) : new WebSocket(url);
    } catch (x) {
      return setErr(x);
    }
    sock.binaryType = 'arraybuffer';
    ws.current = sock;
    setState(`Connecting to ${url}…`);
    log('state', `connecting to ${url}`);
    sock.onopen = () => {
      if (ws.current !== sock) return;
      setOpen(true);
      setState(`Connected to ${url}${sock.protocol ? ` (subprotocol ${sock.protocol})` : ''}.`);
      log('state', 'open');
    };
    sock.onmessage = (m) => {
      const text = typeof m.data === 'string' ? m.data : `[binary, ${m.data.byteLength} bytes]`;
      log('in', text);
    };
    sock.onerror = () => log('state', 'error (the browser gives no detail; see the close code)');
    sock.onclose = (c) => {
      if (ws.current !== sock) return;
      setOpen(false);
      const why = `closed: code ${c.code}${c.reason ? `, ${c.reason}` : ''}${c.wasClean ? '' : ' (not clean)'}`;
      setState(why[0].toUpperCase() + why.slice(1) + '.');
      log('state', why);
      ws.current = null;
    };
  };

  const send = (e) => {
    e.preventDefault();
    if (!ws.current || ws.current.readyState !== WebSocket.OPEN) return;
    ws.current.send(event);
    log('out', event);
  };

  const disconnect = () => ws.current && ws.current.close(1000, 'bye');

  return html`<section>
    <h1>Console</h1>
    ${endpoints.error && html`<${ErrorText} error=${endpoints.error} prefix="The endpoint list did not load" />`}
    ${stats.error && html`<${ErrorText} error=${stats.error} prefix="The gateway's listen address did not load" />`}
    <form onSubmit=${connect}>
      <div class="console-grid">
        <div>
          <label for="console-endpoint">Endpoint</label>
          <select id="console-endpoint" value=${endpoint} onChange=${(e) => setEndpoint(e.currentTarget.value)}>
            ${names.length === 0 && html`<option value="">(no endpoints)</option>`}
            ${names.map((n) => html`<option value=${n}>${n}</option>`)}
          </select>
        </div>
        <div>
          <label for="console-query">Query string (optional)</label>
          <input id="console-query" type="text" value=${query} placeholder="?access_token=…" spellcheck=${false}
            onInput=${(e) => setQuery(e.currentTarget.value)} />
        </div>
        <div>
          <label for="console-protocols">Subprotocols (optional, comma-separated)</label>
          <input id="console-protocols" type="text" value=${protocols} spellcheck=${false} onInput=${(e) => setProtocols(e.currentTarget.value)} />
        </div>
      </div>
      <div class="buttons">
        <button type="submit" class="primary" disabled=${!endpoint || !stats.data}>Connect</button>
        <button type="button" onClick=${disconnect} disabled=${!open}>Disconnect</button>
        <span role="status" class="console-state">${state}</span>
      </div>
    </form>
    <${ErrorText} error=${err} prefix="Cannot connect" />
    <form onSubmit=${send} class="stack-wide">
      <label for="console-event">Event</label>
      <textarea id="console-event" class="code event" value=${event} spellcheck=${false} onInput=${(e) => setEvent(e.currentTarget.value)}
        onKeyDown=${(e) => {
          // Ctrl/⌘+Enter sends; plain Enter stays a newline.
          if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) send(e);
        }}></textarea>
      <div class="buttons">
        <button type="submit" disabled=${!open}>Send</button>
        <button type="button" onClick=${clear}>Clear log</button>
      </div>
    </form>
    <h2 id="console-log-title">Log</h2>
    <ol class="console-log" role="log" aria-labelledby="console-log-title" ref=${logRef}>
      ${shown.map(
        (l) => html`<li key=${l.id} class=${l.dir}>
          <span class="t">${clockTime(l.t)}</span><span class="dir" aria-hidden="true">${DIR[l.dir][0]}</span><span class="visually-hidden">${DIR[l.dir][1]}: </span><span class="msg">${l.text}</span>
        </li>`,
      )}
    </ol>
  </section>`;
}
