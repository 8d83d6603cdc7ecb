// transfer.js: the whole dynamic configuration as one file: download the
// export; import a file after validating it and showing what it changes.
// An import replaces everything: a name missing from the file is deleted.

import { useState, useRef } from './vendor/hooks.module.js';
import { html, api, ErrorText, Confirm, ApiError } from './api.js';
import { jsonError } from './editor.js';
import { parse, same as sameValue } from './json.js';

const KINDS = ['services', 'endpoints', 'consumers'];

/**
 * Per kind: names added, removed and changed by `doc` compared with
 * `current` (both parsed with json.js, compared exactly: a 64-bit id that
 * differs in its last digit is a change).
 */
export function changesOf(current, doc) {
  const out = {};
  for (const k of KINDS) {
    const cur = (current && current[k]) || {};
    const next = (doc && typeof doc[k] === 'object' && doc[k]) || {};
    const added = Object.keys(next).filter((n) => !(n in cur));
    const removed = Object.keys(cur).filter((n) => !(n in next));
    const changed = Object.keys(next).filter((n) => n in cur && !sameValue(cur[n], next[n]));
    const same = Object.keys(next).length - added.length - changed.length;
    out[k] = { added: added.sort(), removed: removed.sort(), changed: changed.sort(), same };
  }
  return out;
}

function Download() {
  const [state, setState] = useState(null);
  const [error, setError] = useState(null);
  const go = async () => {
    setError(null);
    setState('Preparing…');
    try {
      // The gateway's own text, saved as it came: never parsed and written
      // again (a float64 would round its 64-bit integers).
      const [text, ready] = await Promise.all([api('GET', '/config/export', { text: true }), api('GET', '/readyz').catch(() => null)]);
      const version = (ready && ready.config_version) ?? 'current';
      const name = `wasp-config-${version}.json`;
      const url = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
      const a = document.createElement('a');
      a.href = url;
      a.download = name;
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      setState(`Downloaded ${name}.`);
    } catch (e) {
      setState(null);
      setError(e);
    }
  };
  return html`<div>
    <h2>Export</h2>
    <p>Every service, endpoint and consumer now active, as one JSON document (consumers' API keys are never in it).</p>
    <div class="buttons">
      <button type="button" class="primary" onClick=${go}>Download export</button>
      ${state && html`<span role="status">${state}</span>`}
    </div>
    <${ErrorText} error=${error} prefix="Export failed" />
  </div>`;
}

function Import() {
  const [file, setFile] = useState(null); // {name, text, doc}
  const [parseErr, setParseErr] = useState(null);
  const [check, setCheck] = useState(null); // {valid} | {error: ApiError}
  const [changes, setChanges] = useState(null);
  const [comment, setComment] = useState('');
  const [asking, setAsking] = useState(false);
  const [done, setDone] = useState(null);
  const [error, setError] = useState(null);
  const input = useRef(null);

  const pick = async (e) => {
    const f = e.currentTarget.files && e.currentTarget.files[0];
    setFile(null);
    setParseErr(null);
    setCheck(null);
    setChanges(null);
    setDone(null);
    setError(null);
    if (!f) return;
    const text = await f.text();
    const perr = jsonError(text);
    if (perr) {
      setParseErr(perr);
      return;
    }
    const doc = parse(text);
    setFile({ name: f.name, text, doc });
    setCheck({ pending: true });
    try {
      await api('POST', '/config/validate', { body: text });
      setCheck({ valid: true });
    } catch (x) {
      setCheck({ error: x });
    }
    try {
      setChanges(changesOf(await api('GET', '/config/export', { lossless: true }), doc));
    } catch (x) {
      setError(x);
    }
  };

  const apply = async () => {
    const r = await api('POST', '/config/import', { body: file.text, comment: comment.trim() });
    const n = (r.applied || []).length;
    setDone(`Import applied: ${n} change${n === 1 ? '' : 's'}${r.snapshot_version != null ? `, configuration version ${r.snapshot_version}` : ''}.`);
    setChanges(changesOf(await api('GET', '/config/export', { lossless: true }).catch(() => file.doc), file.doc));
  };

  const total = changes ? KINDS.reduce((s, k) => s + changes[k].added.length + changes[k].removed.length + changes[k].changed.length, 0) : 0;
  const err = check && check.error;
  return html`<div>
    <h2>Import</h2>
    <p>An import replaces the whole dynamic configuration in one apply: anything not in the file is deleted (each change is a new version, so it can be undone from Versions).</p>
    <div class="stack">
      <label for="import-file">Configuration file</label>
      <input id="import-file" ref=${input} type="file" accept=".json,application/json" onChange=${pick} />
    </div>
    ${parseErr &&
    html`<p class="error-box import-error" role="alert" data-pointer="">
      The file is not valid JSON${parseErr.line ? ` (line ${parseErr.line}${parseErr.column ? `, column ${parseErr.column}` : ''})` : ''}: ${parseErr.message}
    </p>`}
    ${check && check.pending && html`<p role="status" class="muted">Validating ${file && file.name}…</p>`}
    ${check && check.valid && html`<p class="success import-valid" role="status">${file.name} is valid.</p>`}
    ${err &&
    (err instanceof ApiError && err.status === 422
      ? html`<p class="error-box import-error" role="alert" data-pointer=${err.pointer || ''}>
          ${file.name} is not valid${err.pointer ? html` at <code>${err.pointer}</code>` : ''}: ${err.message}
        </p>`
      : html`<${ErrorText} error=${err} prefix="Validation failed" />`)}
    <${ErrorText} error=${error} />
    ${changes &&
    html`<div class="import-summary">
      <h3>What it changes</h3>
      ${total === 0 ? html`<p>Nothing: the file matches what is active.</p>` : ''}
      <ul class="summary-changes">
        ${KINDS.map((k) => {
          const c = changes[k];
          const parts = [];
          if (c.added.length) parts.push(html`<span>added: ${c.added.join(', ')}</span>`);
          if (c.changed.length) parts.push(html`<span>changed: ${c.changed.join(', ')}</span>`);
          if (c.removed.length) parts.push(html`<span class="error">removed: ${c.removed.join(', ')}</span>`);
          return html`<li><b>${k}</b>: ${parts.length ? parts.map((p, i) => html`${i ? '; ' : ''}${p}`) : 'no change'}${c.same ? ` (${c.same} unchanged)` : ''}</li>`;
        })}
      </ul>
    </div>`}
    ${check &&
    check.valid &&
    !done &&
    html`<div class="stack comment-row">
        <label for="import-comment">Comment</label>
        <input id="import-comment" type="text" value=${comment} maxlength="1024" onInput=${(e) => setComment(e.currentTarget.value)} />
      </div>
      <div class="buttons"><button type="button" class="primary" onClick=${() => setAsking(true)}>Apply import</button></div>`}
    ${done && html`<p class="success" role="status">${done}</p>`}
    ${asking &&
    html`<${Confirm} title=${`Apply ${file.name}?`} danger=${changes && KINDS.some((k) => changes[k].removed.length > 0)}
      body=${`This replaces the whole dynamic configuration${changes ? `: ${total} change${total === 1 ? '' : 's'}` : ''}, applied at once on every worker.`}
      confirmLabel="Apply import" onConfirm=${apply} onClose=${() => setAsking(false)} />`}
  </div>`;
}

export function Transfer() {
  return html`<section>
    <h1>Configuration</h1>
    <${Download} />
    <${Import} />
  </section>`;
}
