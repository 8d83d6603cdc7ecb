// versions.js: an entity's versions, a side-by-side diff of any two, and
// applying an earlier version again (with a confirmation).

import { useState, useEffect } from './vendor/hooks.module.js';
import { html, api, enc, useLoad, LoadState, Confirm, absTime, relTime } from './api.js';

/**
 * The gateway's line diff → side-by-side rows. Each line is a marker
 * (' ' same, '-' only in from, '+' only in to) and the text; a run of '-'
 * followed by a run of '+' is paired row by row, so a changed line sits
 * beside its replacement.
 */
export function diffRows(diff) {
  const lines = diff.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  // The gateway puts one space between marker and text; strip it only when
  // every line has it, so a format without it still shows right.
  const spaced = lines.every((l) => l.length < 2 || l[1] === ' ');
  const items = lines.map((l) => ({ op: l[0] || ' ', text: spaced ? l.slice(2) : l.slice(1) }));
  const rows = [];
  let nFrom = 1;
  let nTo = 1;
  for (let i = 0; i < items.length; ) {
    const it = items[i];
    if (it.op !== '-' && it.op !== '+') {
      rows.push({ left: { n: nFrom++, text: it.text }, right: { n: nTo++, text: it.text } });
      i++;
      continue;
    }
    const dels = [];
    const adds = [];
    while (i < items.length && items[i].op === '-') dels.push(items[i++]);
    while (i < items.length && items[i].op === '+') adds.push(items[i++]);
    for (let k = 0; k < Math.max(dels.length, adds.length); k++) {
      rows.push({
        left: dels[k] ? { n: nFrom++, text: dels[k].text, del: true } : null,
        right: adds[k] ? { n: nTo++, text: adds[k].text, add: true } : null,
      });
    }
  }
  return rows;
}

function rowClass(r) {
  const c = [];
  if (r.left && r.left.del) c.push('del');
  if (r.right && r.right.add) c.push('add');
  return c.length ? c.join(' ') : 'same';
}

function Side({ cell, mark, cls }) {
  if (!cell) return html`<td class="ln"></td><td class="mark"></td><td></td>`;
  const changed = cell.del || cell.add;
  return html`<td class="ln">${cell.n}</td>
    <td class=${'mark ' + (changed ? cls : '')}>${changed ? mark : ''}</td>
    <td class=${changed ? cls : ''}>${cell.text}</td>`;
}

/** The gateway's diff of two versions, side by side. */
export function DiffTable({ kind, name, from, to }) {
  const load = useLoad(() => api('GET', `/${kind}/${enc(name)}/diff?from=${from}&to=${to}`), [kind, name, from, to]);
  if (!load.data) return html`<${LoadState} load=${load} what="the diff" />`;
  const rows = diffRows(load.data.diff || '');
  const added = rows.filter((r) => r.right && r.right.add).length;
  const removed = rows.filter((r) => r.left && r.left.del).length;
  return html`<div>
    <p role="status">${from === to ? 'The same version on both sides.' : added + removed === 0 ? 'No difference.' : `${removed} line${removed === 1 ? '' : 's'} removed (−), ${added} added (+).`}</p>
    <div class="table-wrap">
      <table class="diff" aria-label=${`Differences between version ${from} and version ${to} of ${name}`}>
        <colgroup><col class="lnc" /><col class="markc" /><col class="text" /><col class="lnc" /><col class="markc" /><col class="text" /></colgroup>
        <thead><tr><th colspan="3">From: version ${from}</th><th colspan="3">To: version ${to}</th></tr></thead>
        <tbody>
          ${rows.map(
            (r) => html`<tr class=${rowClass(r)}>
              <${Side} cell=${r.left} mark="−" cls="d" />
              <${Side} cell=${r.right} mark="+" cls="a" />
            </tr>`,
          )}
        </tbody>
      </table>
    </div>
  </div>`;
}

export function Versions({ kind, name, onApplied }) {
  const load = useLoad(() => api('GET', `/${kind}/${enc(name)}/versions`), [kind, name]);
  const [from, setFrom] = useState(null);
  const [to, setTo] = useState(null);
  const [asking, setAsking] = useState(null); // the version number being confirmed
  const [done, setDone] = useState(null);
  const versions = (load.data && load.data.versions) || [];

  // Defaults once the list is known: To = the active version, From = the one before it.
  useEffect(() => {
    if (!versions.length || (from != null && to != null)) return;
    const ai = Math.max(0, versions.findIndex((v) => v.active));
    setTo(versions[ai].version);
    setFrom(versions[Math.max(0, ai - 1)].version);
  }, [load.data]);

  const apply = async (n) => {
    await api('POST', `/${kind}/${enc(name)}/versions/${n}/apply`, { body: {} });
    setDone(n);
    load.reload();
    onApplied && onApplied(n);
  };

  const select = (id, label, value, set) => html`<div class="field">
    <label for=${id}>${label}</label>
    <select id=${id} value=${value ?? ''} onChange=${(e) => set(Number(e.currentTarget.value))}>
      ${versions.map((v) => html`<option value=${v.version}>${v.version}${v.active ? ' (active)' : ''}${v.deleted ? ' (deletion)' : ''}</option>`)}
    </select>
  </div>`;

  return html`<div>
    ${done != null && html`<p class="success" role="status">Version ${done} is active.</p>`}
    <${LoadState} load=${load} what="versions" />
    ${versions.length > 0 &&
    html`<div class="table-wrap">
        <table class="versions">
          <thead><tr><th class="num">Version</th><th>Time</th><th>Author</th><th>Comment</th><th>Active</th><th><span class="visually-hidden">Actions</span></th></tr></thead>
          <tbody>
            ${versions
              .slice()
              .reverse()
              .map(
                (v) => html`<tr key=${v.version} data-version=${v.version} class=${v.active ? 'active-row' : ''}>
                  <td class="num">${v.version}</td>
                  <td><time datetime=${new Date(v.created_ms).toISOString()}>${absTime(v.created_ms)}</time> <span class="muted">${relTime(v.created_ms)}</span></td>
                  <td>${v.author || '—'}</td>
                  <td class="wrap">${v.deleted ? html`<em>deletion</em> ` : ''}${v.comment || ''}</td>
                  <td>${v.active ? html`<span class="badge ok">✓ active</span>` : ''}</td>
                  <td>${!v.active && html`<button type="button" class="small" onClick=${() => setAsking(v.version)}>Apply version ${v.version}</button>`}</td>
                </tr>`,
              )}
          </tbody>
        </table>
      </div>
      <h2>Compare</h2>
      <div class="toolbar">
        ${select('diff-from', 'From', from, setFrom)}
        ${select('diff-to', 'To', to, setTo)}
      </div>
      ${from != null && to != null && html`<${DiffTable} key=${from + '-' + to} kind=${kind} name=${name} from=${from} to=${to} />`}`}
    ${asking != null &&
    html`<${Confirm} title=${`Apply version ${asking} of ${name}?`}
      body=${`Version ${asking} becomes the active one at once, on every worker.`}
      confirmLabel="Apply" onConfirm=${() => apply(asking)} onClose=${() => setAsking(null)} />`}
  </div>`;
}
