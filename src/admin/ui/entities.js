// entities.js: services, endpoints and consumers: the list with a filter,
// a new entity (editor with a name), and one entity's page with tabs
// (Edit, Versions, Instances for services, Keys for consumers) and Delete.

import { useState, useRef } from './vendor/hooks.module.js';
import { html, api, enc, useLoad, LoadState, ErrorText, Confirm, Time, singular, flash } from './api.js';
import { Editor } from './editor.js';
import { Versions, DiffTable } from './versions.js';
import { Keys } from './consumers.js';

const TITLES = { services: 'Services', endpoints: 'Endpoints', consumers: 'Consumers' };
const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;

/** The starting content of a new entity. */
function template(kind, name) {
  if (kind === 'services') return { instances: ['127.0.0.1:3000'] };
  if (kind === 'endpoints') return { path: '/ws/' + (name || 'NAME'), mode: 'echo' };
  return {};
}

/** The list of a kind: GET /{kind} → {items}. */
export async function listEntities(kind) {
  const r = await api('GET', '/' + kind);
  return { items: r[kind] || [] };
}

/** "Applied version N of service NAME" from a PUT/DELETE/apply answer. */
export function appliedText(kind, name, r) {
  const mine = (r && r.applied ? r.applied : []).find((a) => a.name === name) || (r && r.applied && r.applied[0]);
  const v = mine ? mine.version : null;
  return {
    text: v != null ? `Applied: version ${v} of ${singular(kind)} ${name} is active.` : 'Applied.',
    version: v,
  };
}

export function EntityList({ kind }) {
  const load = useLoad(() => listEntities(kind), [kind]);
  const [filter, setFilter] = useState('');
  const one = singular(kind);
  const f = filter.trim().toLowerCase();
  const items = ((load.data && load.data.items) || [])
    .filter((it) => !f || [it.name, it.author, it.comment].some((x) => x && String(x).toLowerCase().includes(f)))
    .sort((a, b) => a.name.localeCompare(b.name));
  return html`<section>
    <div class="title-row">
      <h1>${TITLES[kind]}</h1>
      <a class="button primary" href=${`#/${kind}/+new`}>New ${one}</a>
    </div>
    <div class="toolbar">
      <label for="filter">Filter</label>
      <input id="filter" type="search" value=${filter} placeholder="name, author or comment" onInput=${(e) => setFilter(e.currentTarget.value)} />
    </div>
    <${LoadState} load=${load} what=${kind} />
    ${load.data &&
    html`
      <div class="table-wrap">
        <table class="entities">
          <caption class="muted">${items.length} ${items.length === 1 ? one : kind}${f ? ' matching the filter' : ''}</caption>
          <thead><tr><th>Name</th><th class="num">Version</th><th>Last changed</th><th>Author</th><th>Comment</th></tr></thead>
          <tbody>
            ${items.map(
              (it) => html`<tr key=${it.name} data-name=${it.name}>
                <td><a href=${`#/${kind}/${enc(it.name)}`}>${it.name}</a></td>
                <td class="num">${it.version ?? '—'}</td>
                <td><${Time} ms=${it.created_ms} /></td>
                <td>${it.author || '—'}</td>
                <td class="wrap">${it.comment || ''}</td>
              </tr>`,
            )}
            ${items.length === 0 && html`<tr><td colspan="5" class="muted">No ${kind}${f ? ' match the filter' : ' yet'}.</td></tr>`}
          </tbody>
        </table>
      </div>`}
  </section>`;
}

export function EntityNew({ kind }) {
  const one = singular(kind);
  const [name, setName] = useState('');
  const [nameErr, setNameErr] = useState(null);
  const save = async (value, comment) => {
    const n = name.trim();
    if (!NAME_RE.test(n) || n === '.' || n === '..') {
      const m = 'A name is 1 to 64 letters, digits, ".", "_" or "-".';
      setNameErr(m);
      document.getElementById('new-name').focus();
      throw new Error(m);
    }
    // A new entity must be new: a PUT over an existing name would replace
    // the live one with the template (editing is the Edit tab's job).
    let exists = false;
    try {
      await api('GET', `/${kind}/${enc(n)}`);
      exists = true;
    } catch (e) {
      if (e.status !== 404) throw e;
    }
    if (exists) {
      const m = `A ${one} named "${n}" exists already: open it to edit it.`;
      setNameErr(m);
      document.getElementById('new-name').focus();
      throw new Error(m);
    }
    setNameErr(null);
    // The endpoint template's path says NAME until the name is known.
    if (kind === 'endpoints' && value.path === '/ws/NAME') value = { ...value, path: '/ws/' + n };
    let r;
    try {
      // Create-only: should the name appear between the look above and this
      // save (another operator), the gateway refuses with 412.
      r = await api('PUT', `/${kind}/${enc(n)}`, { body: value, comment, headers: { 'If-None-Match': '*' } });
    } catch (e) {
      if (e.status !== 412) throw e;
      const m = `A ${one} named "${n}" was just created by someone else: open it to edit it.`;
      setNameErr(m);
      throw new Error(m);
    }
    const msg = appliedText(kind, n, r);
    const route = `#/${kind}/${enc(n)}`;
    flash(msg.text, route, msg.version);
    location.hash = route;
    return msg;
  };
  const nameField = html`<div class="field">
    <label for="new-name">Name</label>
    <input id="new-name" type="text" value=${name} required spellcheck=${false} autocomplete="off"
      aria-invalid=${nameErr ? 'true' : undefined} aria-describedby=${nameErr ? 'new-name-error' : undefined}
      onInput=${(e) => setName(e.currentTarget.value)} />
    ${nameErr && html`<p class="field-error" id="new-name-error">${nameErr}</p>`}
  </div>`;
  return html`<section>
    <p><a href=${'#/' + kind}>← ${TITLES[kind]}</a></p>
    <h1>New ${one}</h1>
    ${kind === 'endpoints' && html`<p class="muted">A path of <code>/ws/NAME</code> becomes <code>/ws/</code> and the endpoint's name.</p>`}
    <${Editor} initial=${template(kind, '')} legend=${one} save=${save} before=${nameField} />
  </section>`;
}

/**
 * The words and choices when a save is refused with 412: the entity changed
 * since the editor loaded version `from` (another tab or operator). Nothing
 * was applied and the edit stays in the editor; the operator can see what
 * changed, load the new version, or knowingly save over it.
 */
function Conflict({ kind, name, from, now, onLoad, onOverwrite }) {
  const [show, setShow] = useState(false);
  const one = singular(kind);
  return html`<div class="error-box conflict" role="alert">
      <p>Not saved: ${one} ${name} was changed by someone else (another operator or tab) since this editor loaded
        version ${from}; ${now != null ? `version ${now} is active now` : 'it has been deleted since'}.
        Nothing was applied, and your edit is still here.</p>
      <div class="buttons">
        ${now != null &&
        html`<button type="button" aria-expanded=${show ? 'true' : 'false'} onClick=${() => setShow(!show)}>
          ${show ? 'Hide' : 'Show'} what changed (version ${from} → ${now})</button>`}
        ${now != null && html`<button type="button" onClick=${onLoad}>Load version ${now} (drops your edit)</button>`}
        <button type="button" class="danger" onClick=${onOverwrite}>
          ${now != null ? `Save my edit over version ${now}` : `Save my edit (creates ${name} again)`}</button>
      </div>
    </div>
    ${show && html`<${DiffTable} kind=${kind} name=${name} from=${from} to=${now} />`}`;
}

export function EntityDetail({ kind, name, tab }) {
  const one = singular(kind);
  // Lossless: the editor must get back the numbers the gateway holds.
  const load = useLoad(() => api('GET', `/${kind}/${enc(name)}`, { lossless: true }), [kind, name]);
  const [version, setVersion] = useState(null);
  // The version the editor's content comes from, sent as If-Match so a save
  // from an editor opened before someone else's save is refused (412)
  // instead of silently reverting it. 'absent': the entity was deleted in
  // the meantime, and a save may only create it again (If-None-Match: *).
  const basis = useRef(undefined);
  const loaded = useRef(null);
  if (load.data && loaded.current !== load.data) {
    loaded.current = load.data;
    basis.current = load.data.version;
  }
  const precondition = () =>
    basis.current === 'absent'
      ? { 'If-None-Match': '*' }
      : basis.current != null
        ? { 'If-Match': `"${basis.current}"` }
        : undefined;
  const [confirmDelete, setConfirmDelete] = useState(false);
  const base = `#/${kind}/${enc(name)}`;
  const tabs = [
    ['edit', 'Edit'],
    ['versions', 'Versions'],
    ...(kind === 'services' ? [['instances', 'Instances']] : []),
    ...(kind === 'consumers' ? [['keys', 'Keys']] : []),
  ];
  const exists = !!load.data;
  const shownVersion = version ?? (load.data && load.data.version);

  const save = async (value, comment) => {
    const r = await api('PUT', `/${kind}/${enc(name)}`, { body: value, comment, headers: precondition() });
    const msg = appliedText(kind, name, r);
    if (msg.version != null) {
      setVersion(msg.version);
      basis.current = msg.version;
    }
    return msg;
  };
  const conflict = (err, retry) => {
    const now = err.body && typeof err.body === 'object' && err.body.version != null ? err.body.version : null;
    return html`<${Conflict} kind=${kind} name=${name} from=${basis.current} now=${now}
      onLoad=${() => {
        setVersion(null);
        load.reload();
      }}
      onOverwrite=${() => {
        basis.current = now != null ? now : 'absent';
        retry();
      }} />`;
  };
  const del = async () => {
    // Deletes the version this page shows, not one saved since elsewhere.
    const headers = typeof basis.current === 'number' ? { 'If-Match': `"${basis.current}"` } : undefined;
    let r;
    try {
      r = await api('DELETE', `/${kind}/${enc(name)}`, { headers });
    } catch (e) {
      if (e.status !== 412) throw e;
      const now = e.body && e.body.version != null ? `version ${e.body.version} is active now` : 'it is gone already';
      throw new Error(`Not deleted: ${one} ${name} was changed by someone else since this page loaded version ${basis.current} (${now}). Reload the page to see it.`);
    }
    const v = appliedText(kind, name, r).version;
    flash(`Deleted ${one} ${name}${v != null ? ` (recorded as version ${v})` : ''}.`, '#/' + kind, v);
    location.hash = '#/' + kind;
  };

  let body;
  if (tab === 'versions') body = html`<${Versions} kind=${kind} name=${name} onApplied=${() => load.reload()} />`;
  else if (tab === 'instances') body = html`<${Instances} name=${name} />`;
  else if (tab === 'keys') body = html`<${Keys} name=${name} />`;
  else if (load.error && load.error.status === 404)
    body = html`<p class="error" role="alert">${load.error.message}.</p>
      <p>Its earlier versions, if any, are under <a href=${base + '/versions'}>Versions</a>; applying one brings it back.</p>
      <p><a href=${`#/${kind}/+new`}>Create a new ${one}</a></p>`;
  else if (load.error) body = html`<${ErrorText} error=${load.error} />`;
  else if (!load.data) body = html`<p class="muted" role="status">Loading ${one} ${name}…</p>`;
  // Keyed by the loaded version: "Load version N" after a conflict starts a fresh editor.
  else
    body = html`<${Editor} key=${load.data.version} initial=${load.data.content} legend=${`${one} ${name}`} save=${save}
      conflict=${conflict} />`;

  return html`<section>
    <p><a href=${'#/' + kind}>← ${TITLES[kind]}</a></p>
    <div class="title-row">
      <h1>${one[0].toUpperCase() + one.slice(1)} ${name}</h1>
      ${shownVersion != null && html`<span class="muted">active version ${shownVersion}</span>`}
      ${exists && html`<button type="button" class="danger" onClick=${() => setConfirmDelete(true)}>Delete</button>`}
    </div>
    <nav aria-label=${`${one} ${name}`}>
      <ul class="tabs">
        ${tabs.map(([k, label]) => html`<li><a href=${`${base}/${k}`} aria-current=${tab === k ? 'page' : undefined}>${label}</a></li>`)}
      </ul>
    </nav>
    ${body}
    ${confirmDelete &&
    html`<${Confirm} title=${`Delete ${one} ${name}?`} danger
      body=${`The deletion is recorded as a new version of ${name} and applied at once. Applying an earlier version brings it back.`}
      confirmLabel="Delete" onConfirm=${del} onClose=${() => setConfirmDelete(false)} />`}
  </section>`;
}

/** A service's instances now (GET /services/{name}/instances). */
function Instances({ name }) {
  const load = useLoad(() => api('GET', `/services/${enc(name)}/instances`), [name]);
  const d = load.data;
  return html`<div>
    <div class="toolbar"><button type="button" onClick=${load.reload}>Refresh</button></div>
    <${LoadState} load=${load} what="instances" />
    ${d &&
    html`<p>Source: <b>${d.source || 'static'}</b>${d.error ? html` · <span class="error">${d.error}</span>` : ''}</p>
      <div class="table-wrap">
        <table>
          <thead><tr><th>Address</th><th>State</th><th class="num">In flight</th><th class="num">Failures</th><th class="num">Ejections</th><th class="num">Ejected for</th><th class="num">Latency</th></tr></thead>
          <tbody>
            ${(d.instances || []).map(
              (i) => html`<tr key=${i.address}>
                <td>${i.address}</td>
                <td><span class=${'badge ' + (i.state === 'serving' ? 'ok' : 'bad')}>${i.state}</span></td>
                <td class="num">${i.in_flight ?? '—'}</td>
                <td class="num">${i.failures ?? '—'}</td>
                <td class="num">${i.ejections ?? '—'}</td>
                <td class="num">${i.ejected_for_ms != null ? `${Math.round(i.ejected_for_ms / 1000)} s` : '—'}</td>
                <td class="num">${i.latency_ms != null ? `${i.latency_ms} ms` : '—'}</td>
              </tr>`,
            )}
            ${(d.instances || []).length === 0 && html`<tr><td colspan="7" class="muted">No instances (a mock or an empty discovery answer).</td></tr>`}
          </tbody>
        </table>
      </div>`}
  </div>`;
}
