// consumers.js: a consumer's API keys: the list (ids and times only: the
// gateway never shows a key again), creating one (its key shown once, with
// a copy button) and revoking one. The consumer itself is edited like any
// entity (entities.js).

import { useState, useRef } from './vendor/hooks.module.js';
import { html, api, enc, useLoad, LoadState, ErrorText, Confirm, Time } from './api.js';

export function Keys({ name }) {
  const load = useLoad(() => api('GET', `/consumers/${enc(name)}/keys`), [name]);
  const [created, setCreated] = useState(null); // {id, key, created_ms}
  const [createErr, setCreateErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const [revoking, setRevoking] = useState(null);
  const [revoked, setRevoked] = useState(null);
  const [copied, setCopied] = useState(null);
  const keyRef = useRef(null);
  const keys = (load.data && load.data.keys) || [];

  const create = async () => {
    setBusy(true);
    setCreateErr(null);
    setCreated(null);
    setRevoked(null);
    setCopied(null);
    try {
      setCreated(await api('POST', `/consumers/${enc(name)}/keys`, { body: {} }));
      load.reload();
    } catch (e) {
      // 409 no_key_secret: the gateway has no secret to store keys under;
      // its message says which variable to set.
      setCreateErr(e);
    } finally {
      setBusy(false);
    }
  };

  const copy = async () => {
    try {
      await navigator.clipboard.writeText(created.key);
      setCopied('Copied to the clipboard.');
    } catch {
      // No clipboard (plain http on another host, or denied): select the
      // key so Ctrl+C copies it.
      const sel = getSelection();
      const range = document.createRange();
      range.selectNodeContents(keyRef.current);
      sel.removeAllRanges();
      sel.addRange(range);
      setCopied('The clipboard is not available here: the key is selected, press Ctrl+C (⌘C) to copy it.');
    }
  };

  const revoke = async (id) => {
    await api('DELETE', `/consumers/${enc(name)}/keys/${enc(id)}`);
    if (created && created.id === id) setCreated(null);
    setRevoked(id);
    load.reload();
  };

  return html`<div>
    <div class="toolbar">
      <button type="button" class="primary" onClick=${create} disabled=${busy}>Create key</button>
    </div>
    <${ErrorText} error=${createErr} prefix="No key was created" />
    ${created &&
    html`<div class="key-once" role="status" data-key-id=${created.id}>
      <p><b>New key ${created.id}</b>: shown only once. Copy it now; the gateway keeps only its hash.</p>
      <p><code class="new-key" ref=${keyRef}>${created.key}</code></p>
      <div class="buttons">
        <button type="button" onClick=${copy}>Copy key</button>
        ${copied && html`<span class="muted">${copied}</span>`}
      </div>
    </div>`}
    ${revoked && html`<p class="success" role="status">Key ${revoked} was revoked.</p>`}
    <h2>Live keys</h2>
    <${LoadState} load=${load} what="keys" />
    ${load.data &&
    html`<div class="table-wrap">
      <table class="keys">
        <thead><tr><th>Key id</th><th>Created</th><th><span class="visually-hidden">Actions</span></th></tr></thead>
        <tbody>
          ${keys.map(
            (k) => html`<tr key=${k.id} data-key-id=${k.id}>
              <td><code>${k.id}</code></td>
              <td><${Time} ms=${k.created_ms} /></td>
              <td><button type="button" class="small danger" aria-label=${'Revoke key ' + k.id} onClick=${() => setRevoking(k.id)}>Revoke</button></td>
            </tr>`,
          )}
          ${keys.length === 0 && html`<tr><td colspan="3" class="muted">No live keys.</td></tr>`}
        </tbody>
      </table>
    </div>`}
    ${revoking &&
    html`<${Confirm} title=${`Revoke key ${revoking} of ${name}?`} danger
      body="Requests with this key are refused from the next one on, on every worker. This cannot be undone."
      confirmLabel="Revoke" onConfirm=${() => revoke(revoking)} onClose=${() => setRevoking(null)} />`}
  </div>`;
}
