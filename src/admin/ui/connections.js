// connections.js: the open WebSocket connections, filtered by endpoint and
// group, a page at a time (the gateway's `next` cursor); per connection:
// details, send a message, close. Also sending to a whole endpoint or group.

import { useState, useEffect } from './vendor/hooks.module.js';
import { html, api, enc, useLoad, LoadState, ErrorText, Dialog, Confirm, Time, absTime } from './api.js';
import { listEntities } from './entities.js';

const PAGE = 50;

export function Connections() {
  const endpoints = useLoad(() => listEntities('endpoints'), []);
  const [endpoint, setEndpoint] = useState('');
  const [groupText, setGroupText] = useState('');
  const [group, setGroup] = useState('');
  const [cursors, setCursors] = useState(['']); // cursors[i] opens page i
  const [dialog, setDialog] = useState(null); // {type:'view'|'send'|'close', ...}
  const [note, setNote] = useState(null);
  const cursor = cursors[cursors.length - 1];

  // The group filter applies 400 ms after typing stops.
  useEffect(() => {
    const t = setTimeout(() => setGroup(groupText.trim()), 400);
    return () => clearTimeout(t);
  }, [groupText]);
  useEffect(() => setCursors(['']), [endpoint, group]);

  const q = new URLSearchParams({ limit: String(PAGE) });
  if (endpoint) q.set('endpoint', endpoint);
  if (group) q.set('group', group);
  if (cursor) q.set('cursor', cursor);
  const query = q.toString();
  // Each answer says which page it is, so rows of another page are never
  // shown under this one's caption while it loads (a slow gateway).
  const load = useLoad(async () => ({ ...(await api('GET', '/connections?' + query)), query }), [query]);
  const current = !!load.data && load.data.query === query;
  const conns = (current && load.data.connections) || [];
  const what = `${endpoint ? ` on ${endpoint}` : ''}${group ? ` in group ${group}` : ''}`;
  // Previous and Next are off while a page loads: a second click would go
  // on from the cursor of the page before.
  const busy = load.loading;

  const names = ((endpoints.data && endpoints.data.items) || []).map((e) => e.name).sort();
  return html`<section>
    <h1>Connections</h1>
    <form class="toolbar" onSubmit=${(e) => {
      e.preventDefault();
      setGroup(groupText.trim());
    }}>
      <label for="conn-endpoint">Endpoint</label>
      <select id="conn-endpoint" value=${endpoint} onChange=${(e) => setEndpoint(e.currentTarget.value)}>
        <option value="">All endpoints</option>
        ${names.map((n) => html`<option value=${n}>${n}</option>`)}
      </select>
      <label for="conn-group">Group</label>
      <input id="conn-group" type="text" value=${groupText} spellcheck=${false} onInput=${(e) => setGroupText(e.currentTarget.value)} />
      <button type="button" onClick=${load.reload}>Refresh</button>
      ${endpoint &&
      html`<button type="button" onClick=${() => setDialog({ type: 'send', title: `Send to everyone on ${endpoint}`, path: `/endpoints/${enc(endpoint)}/messages` })}>
        Send to endpoint</button>`}
      ${group &&
      html`<button type="button" onClick=${() => setDialog({ type: 'send', title: `Send to group ${group}`, path: `/groups/${enc(group)}/messages` })}>
        Send to group</button>`}
    </form>
    ${endpoints.error && html`<${ErrorText} error=${endpoints.error} prefix="The endpoint list did not load" />`}
    ${note && html`<p class="success" role="status">${note}</p>`}
    <${LoadState} load=${load} what="connections" />
    ${load.data &&
    html`<div class="table-wrap">
        <table class="connections">
          <caption class="muted" aria-live="polite">${current
            ? `Page ${cursors.length}: ${conns.length} connection${conns.length === 1 ? '' : 's'}${what}`
            : `Loading page ${cursors.length}${what}…`}</caption>
          <thead><tr><th>Id</th><th>Endpoint</th><th>Peer</th><th>Connected</th><th>Last active</th><th>Groups</th><th><span class="visually-hidden">Actions</span></th></tr></thead>
          <tbody>
            ${conns.map(
              (c) => html`<tr key=${c.id} data-connection=${c.id}>
                <td><code>${c.id}</code></td>
                <td>${c.endpoint}</td>
                <td>${c.remote_addr}</td>
                <td>${absTime(c.connected_at_ms)}</td>
                <td><${Time} ms=${c.last_active_ms} compact /></td>
                <td class="wrap">${(c.groups || []).join(', ') || '—'}</td>
                <td class="actions">
                  <button type="button" class="small" aria-label=${'View ' + c.id} onClick=${() => setDialog({ type: 'view', id: c.id })}>View</button>
                  ${' '}<button type="button" class="small" aria-label=${'Send to ' + c.id}
                    onClick=${() => setDialog({ type: 'send', title: `Send to connection ${c.id}`, path: `/connections/${enc(c.id)}` })}>Send</button>
                  ${' '}<button type="button" class="small danger" aria-label=${'Close ' + c.id} onClick=${() => setDialog({ type: 'close', id: c.id })}>Close</button>
                </td>
              </tr>`,
            )}
            ${!current && html`<tr><td colspan="7" class="muted" role="status">Loading…</td></tr>`}
            ${current && conns.length === 0 && html`<tr><td colspan="7" class="muted">No open connections${endpoint || group ? ' match the filter' : ''}.</td></tr>`}
          </tbody>
        </table>
      </div>
      <div class="buttons">
        <button type="button" disabled=${cursors.length < 2 || busy} onClick=${() => setCursors(cursors.slice(0, -1))}>Previous page</button>
        <button type="button" disabled=${!current || !load.data.next || busy} onClick=${() => setCursors([...cursors, load.data.next])}>Next page</button>
      </div>`}
    ${dialog && dialog.type === 'view' && html`<${ViewDialog} id=${dialog.id} onClose=${() => setDialog(null)} />`}
    ${dialog && dialog.type === 'send' && html`<${SendDialog} title=${dialog.title} path=${dialog.path} onClose=${() => setDialog(null)} />`}
    ${dialog &&
    dialog.type === 'close' &&
    html`<${Confirm} title=${`Close connection ${dialog.id}?`} danger body="The gateway closes it with code 1000 (normal closure); the client may reconnect."
      confirmLabel="Close connection"
      onConfirm=${async () => {
        await api('DELETE', `/connections/${enc(dialog.id)}`);
        setNote(`Connection ${dialog.id} is closing.`);
        // The close handshake takes a moment: look again once it is likely done.
        setTimeout(load.reload, 700);
      }}
      onClose=${() => setDialog(null)} />`}
  </section>`;
}

function ViewDialog({ id, onClose }) {
  const load = useLoad(() => api('GET', `/connections/${enc(id)}`), [id]);
  return html`<${Dialog} title=${`Connection ${id}`} onClose=${onClose} wide>
    <${LoadState} load=${load} what="the connection" />
    ${load.data && html`<pre class="conn-details">${JSON.stringify(load.data, null, 2)}</pre>`}
    <div class="buttons"><button type="button" onClick=${onClose}>Done</button></div>
  </${Dialog}>`;
}

/** A message to a connection, an endpoint or a group: the body is sent as is. */
function SendDialog({ title, path, onClose }) {
  const [text, setText] = useState('');
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const send = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setResult(null);
    try {
      // The body goes to the client(s) byte for byte; Content-Type is
      // application/json whatever it holds because the gateway asks for it
      // on every write when it has no token.
      const r = await api('POST', path, { body: text });
      const n = r && r.queued != null ? r.queued : null;
      setResult(`Sent${n != null ? `: queued to ${n} connection${n === 1 ? '' : 's'}` : ''}${r && r.too_large ? ` (${r.too_large} refused it as too large)` : ''}.`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<${Dialog} title=${title} onClose=${onClose}>
    <form onSubmit=${send} class="stack-wide">
      <label for="send-message">Message</label>
      <textarea id="send-message" class="code" rows="6" value=${text} spellcheck=${false} onInput=${(e) => setText(e.currentTarget.value)}></textarea>
      <${ErrorText} error=${error} prefix="Not sent" />
      ${result && html`<p class="success" role="status">${result}</p>`}
      <div class="buttons">
        <button type="submit" class="primary" disabled=${busy}>Send</button>
        <button type="button" onClick=${onClose}>${result ? 'Done' : 'Cancel'}</button>
      </div>
    </form>
  </${Dialog}>`;
}
