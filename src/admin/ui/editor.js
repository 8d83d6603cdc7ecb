// editor.js: edits one entity's JSON (a service, endpoint or consumer) in
// two modes. "Form" is generated from the value itself (no schema): objects
// become fieldsets, scalars labelled inputs, arrays lists with Add/Remove.
// "JSON" is a textarea with line numbers. Every input carries
// data-pointer (its RFC 6901 pointer) so a 422 from the gateway, which names
// the pointer, lands at the right input. Values are read and written with
// json.js, so a number a float64 cannot hold (a 64-bit id) is kept exactly.

import { Component } from './vendor/preact.module.js';
import { useState, useEffect, useRef } from './vendor/hooks.module.js';
import { html, ApiError } from './api.js';
import { parse, stringify, numberOf, isNumber, JsonNumber } from './json.js';

// --- JSON pointers --------------------------------------------------------

const escKey = (k) => String(k).replace(/~/g, '~0').replace(/\//g, '~1');
const unescKey = (k) => k.replace(/~1/g, '/').replace(/~0/g, '~');
export const child = (ptr, key) => `${ptr}/${escKey(key)}`;

function parts(ptr) {
  return ptr === '' ? [] : ptr.slice(1).split('/').map(unescKey);
}

/** A copy of `root` with the value at `ptr` replaced (undefined = removed). */
function setAt(root, ptr, value) {
  const ks = parts(ptr);
  if (ks.length === 0) return value;
  const walk = (node, i) => {
    const k = ks[i];
    const copy = Array.isArray(node) ? node.slice() : { ...node };
    if (i === ks.length - 1) {
      if (value === undefined) {
        if (Array.isArray(copy)) copy.splice(Number(k), 1);
        else delete copy[k];
      } else copy[k] = value;
    } else copy[k] = walk(node[k], i + 1);
    return copy;
  };
  return walk(root, 0);
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof JsonNumber);

/** A DOM id made from a pointer (ids may not hold every character). */
const idOf = (prefix, ptr) => prefix + ptr.replace(/[^A-Za-z0-9_-]/g, (c) => '_' + c.charCodeAt(0).toString(16));

// --- JSON parse errors with a line -----------------------------------------

/** {message, line, column} for text that does not parse, else null. */
export function jsonError(text) {
  try {
    JSON.parse(text);
    return null;
  } catch (e) {
    const msg = String(e.message || e);
    let line = null;
    let column = null;
    const lc = /line (\d+) column (\d+)/.exec(msg);
    const pos = /position (\d+)/.exec(msg);
    if (lc) {
      line = Number(lc[1]);
      column = Number(lc[2]);
    } else if (pos) {
      const before = text.slice(0, Number(pos[1]));
      line = before.split('\n').length;
      column = before.length - before.lastIndexOf('\n');
    } else if (/end of JSON input/i.test(msg)) {
      line = text.split('\n').length;
    }
    // V8 repeats the place in its message; it is shown once, by us.
    return { message: msg.replace(/\s*\(line \d+ column \d+\)/, ''), line, column };
  }
}

// --- The form's rows ---------------------------------------------------------

/**
 * One value of the form (a scalar's row, or a list's or object's fieldset
 * with its children). A row renders again only when its own value, place
 * or the error map changed: an edit copies only the path down to the edited
 * value (setAt), so a key typed into one field of a 15,000-line entity
 * re-renders that path, not every row. Handlers reach the editor through
 * `ctx.current` (a ref), so a row that did not render again never calls a
 * stale one.
 */
class Node extends Component {
  shouldComponentUpdate(p) {
    const q = this.props;
    return p.v !== q.v || p.ptr !== q.ptr || p.label !== q.label || p.errors !== q.errors || p.removable !== q.removable;
  }

  render({ label, v, ptr, removable, errors, ctx }) {
    const update = (p, x) => ctx.current.update(p, x);
    const onRemove = removable ? () => update(ptr, undefined) : null;
    const err = errors[ptr];
    if (!isObj(v) && !Array.isArray(v)) return scalar(label, v, ptr, onRemove, err, ctx);
    const kids = Array.isArray(v)
      ? v.map((item, i) => html`<${Node} key=${i} label=${`${label} [${i}]`} v=${item} ptr=${child(ptr, i)} removable errors=${errors} ctx=${ctx} />`)
      : Object.keys(v).map((k) => html`<${Node} key=${k} label=${k} v=${v[k]} ptr=${child(ptr, k)} removable errors=${errors} ctx=${ctx} />`);
    const add = () => {
      const last = v[v.length - 1];
      const blank = isObj(last) ? {} : isNumber(last) ? 0 : typeof last === 'boolean' ? false : '';
      update(ptr, [...v, blank]);
    };
    return html`<fieldset data-pointer=${ptr} aria-describedby=${err ? idOf('e', ptr) : undefined}>
      <legend>${label}</legend>
      ${onRemove && html`<button type="button" class="small remove-set" aria-label=${'Remove ' + label} onClick=${onRemove}>Remove</button>`}
      ${err && html`<p class="field-error" id=${idOf('e', ptr)}>${err}</p>`}
      ${kids}
      ${Array.isArray(v)
        ? html`${v.length === 0 && html`<p class="muted">(empty list)</p>`}
            <div><button type="button" class="small" aria-label=${'Add to ' + label} onClick=${add}>Add</button></div>`
        : html`<${AddField} ptr=${ptr} obj=${v} onAdd=${(k, x) => update(child(ptr, k), x)} />`}
    </fieldset>`;
  }
}

function scalar(label, v, ptr, onRemove, err, ctx) {
  const update = (x) => ctx.current.update(ptr, x);
  const numeric = ctx.current.numeric; // pointers shown as number inputs, kept while emptied
  const id = idOf('f', ptr);
  const errId = idOf('e', ptr);
  const common = {
    id,
    'data-pointer': ptr,
    'aria-invalid': err ? 'true' : undefined,
    'aria-describedby': err ? errId : undefined,
  };
  let input;
  if (typeof v === 'boolean') {
    input = html`<input type="checkbox" ...${common} checked=${v} onChange=${(e) => update(e.currentTarget.checked)} />`;
  } else if (isNumber(v) || (v === '' && numeric.has(ptr))) {
    numeric.add(ptr);
    // The number's text, not a float64 of it: 1234567890123456789 stays so.
    input = html`<input type="number" step="any" ...${common} value=${String(v)}
      onInput=${(e) => {
        const raw = e.currentTarget.value;
        const n = raw === '' ? NaN : numberOf(raw);
        update(Number.isNaN(Number(n)) ? '' : n);
      }} />`;
  } else {
    input = html`<input type="text" ...${common} value=${v == null ? '' : v} placeholder=${v === null ? 'null' : undefined}
      spellcheck=${false} autocomplete="off" onInput=${(e) => update(e.currentTarget.value)} />`;
  }
  return html`<div class="field">
    <label for=${id}>${label}</label>
    ${input}
    ${onRemove && html`<button type="button" class="small" aria-label=${'Remove ' + label} onClick=${onRemove}>Remove</button>`}
    ${err && html`<p class="field-error" id=${errId}>${err}</p>`}
  </div>`;
}

/** The JSON view's line numbers: 15,000 of them are not redrawn per key. */
class Gutter extends Component {
  shouldComponentUpdate(p) {
    return p.lines !== this.props.lines || p.bad !== this.props.bad;
  }
  render({ lines, bad, gutterRef }) {
    return html`<pre class="gutter" aria-hidden="true" ref=${gutterRef}>${Array.from(
      { length: lines },
      (_, i) => html`<span class=${i + 1 === bad ? 'bad' : undefined}>${i + 1}</span>`,
    )}</pre>`;
  }
}

// --- The editor -------------------------------------------------------------

/**
 * props: initial (a value parsed by json.js: big numbers stay exact),
 * legend (root fieldset's legend), save(value, comment) → promise of a
 * success message (string or {text, version}), before (extra controls
 * above, e.g. the name of a new entity), conflict(error, retry) → what to
 * show when the gateway answers 412 (the entity changed since it was
 * loaded; `retry` saves again).
 */
export function Editor({ initial, legend, save, before, conflict }) {
  const [mode, setMode] = useState('form');
  const [value, setValue] = useState(initial);
  const [text, setText] = useState(() => stringify(initial, 2));
  const [textError, setTextError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [top, setTop] = useState(null); // {message, pointer?} refused by the gateway or local; {conflict}
  const [fieldErrors, setFieldErrors] = useState({});
  const [saved, setSaved] = useState(null);
  const [focusPtr, setFocusPtr] = useState(null);
  const formRef = useRef(null);
  // The comment is an uncontrolled input read at save time: a key typed
  // into it must not re-render the editor (and a large form with it).
  const commentRef = useRef(null);
  const ctx = useRef({ numeric: new Set() });

  useEffect(() => {
    if (focusPtr == null || !formRef.current) return;
    let el = formRef.current.querySelector(`[data-pointer="${CSS.escape(focusPtr)}"]`);
    // A refused list or object: focus its first control.
    if (el && el.tagName === 'FIELDSET') el = el.querySelector('input, select, textarea') || el.querySelector('button');
    if (el) el.focus();
    setFocusPtr(null);
  }, [focusPtr]);

  const toJson = () => {
    setText(stringify(value, 2));
    setTextError(null);
    setMode('json');
  };
  const toForm = () => {
    const err = jsonError(text);
    if (err) {
      setTextError(err);
      return;
    }
    const v = parse(text);
    if (!isObj(v)) {
      setTextError({ message: 'The top level must be a JSON object ({…}).', line: 1 });
      return;
    }
    setValue(v);
    setTextError(null);
    setMode('form');
  };

  ctx.current.update = (ptr, v) => {
    setValue((old) => setAt(old, ptr, v));
    setSaved(null);
    // An edit inside a refused field (or list/object) clears its message.
    const stale = Object.keys(fieldErrors).filter((k) => ptr === k || ptr.startsWith(k + '/'));
    if (stale.length) {
      const rest = { ...fieldErrors };
      for (const k of stale) delete rest[k];
      setFieldErrors(rest);
    }
  };

  const submit = async (e) => {
    if (e) e.preventDefault();
    let body = value;
    if (mode === 'json') {
      const err = jsonError(text);
      if (err) {
        setTextError(err);
        setTop({ message: 'The JSON does not parse; nothing was sent.', local: true });
        return;
      }
      body = parse(text);
    }
    setBusy(true);
    setTop(null);
    setFieldErrors({});
    setSaved(null);
    try {
      const msg = await save(body, commentRef.current ? commentRef.current.value.trim() : '');
      setSaved(typeof msg === 'string' ? { text: msg } : msg);
      if (commentRef.current) commentRef.current.value = '';
    } catch (err) {
      if (err instanceof ApiError && err.status === 422 && err.pointer !== undefined) {
        const p = err.pointer || '';
        const el =
          mode === 'form' && p !== '' && formRef.current
            ? formRef.current.querySelector(`[data-pointer="${CSS.escape(p)}"]`)
            : null;
        if (el && el.tagName === 'INPUT') {
          setFieldErrors({ [p]: err.message });
          setTop({ message: err.message });
          setFocusPtr(p);
        } else if (el) {
          // The pointer names a whole list or object (e.g. /instances for
          // one bad address): the message goes inside its fieldset, and the
          // top names the pointer since no single input is meant.
          setFieldErrors({ [p]: err.message });
          setTop({ message: err.message, pointer: p });
          setFocusPtr(p);
        } else {
          setTop({ message: err.message, pointer: p });
        }
      } else if (err instanceof ApiError && err.status === 412 && conflict) {
        setTop({ conflict: err });
      } else if (err instanceof ApiError && err.status === 401) {
        // The login form now covers the editor, which stays as it is.
        setTop({ message: 'Not saved: the gateway asked for the admin token (401). Your edit and comment are kept: save again once signed in.', local: true });
      } else {
        // Not a validation answer: unreachable, 404, 5xx, or a local check.
        setTop({ message: `Not saved: ${err.message || String(err)}`, local: true });
      }
    } finally {
      setBusy(false);
    }
  };

  const lines = text.split('\n').length;
  const gutter = useRef(null);
  const errLine = textError && textError.line;

  return html`<form class="editor" onSubmit=${submit} noValidate>
    ${before}
    <div class="toolbar" role="group" aria-label="Editor mode">
      <button type="button" aria-pressed=${mode === 'form' ? 'true' : 'false'} onClick=${() => mode !== 'form' && toForm()}>Form</button>
      <button type="button" aria-pressed=${mode === 'json' ? 'true' : 'false'} onClick=${() => mode !== 'json' && toJson()}>JSON</button>
    </div>
    ${top && top.conflict && conflict(top.conflict, () => submit())}
    ${top &&
    !top.conflict &&
    html`<div class="error-box" role="alert">
      ${top.local ? '' : 'The gateway refused this: '}${top.message}${top.pointer !== undefined && html` (at ${top.pointer === '' ? 'the top level' : html`<code>${top.pointer}</code>`})`}
    </div>`}
    ${mode === 'form'
      ? html`<div ref=${formRef}><${Node} label=${legend} v=${value} ptr="" errors=${fieldErrors} ctx=${ctx} /></div>`
      : html`<div class="stack-wide">
          <label for="json-text">JSON</label>
          <div class="json-box">
            <${Gutter} lines=${lines} bad=${errLine} gutterRef=${gutter} />
            <textarea id="json-text" class="code" spellcheck=${false} value=${text}
              aria-invalid=${textError ? 'true' : undefined} aria-describedby=${textError ? 'json-error' : undefined}
              onInput=${(e) => {
                setText(e.currentTarget.value);
                setSaved(null);
              }}
              onScroll=${(e) => gutter.current && (gutter.current.scrollTop = e.currentTarget.scrollTop)}></textarea>
          </div>
          ${textError &&
          html`<p class="error" id="json-error" role="alert">
            Not valid JSON${textError.line ? ` at line ${textError.line}${textError.column ? `, column ${textError.column}` : ''}` : ''}: ${textError.message}
          </p>`}
        </div>`}
    <div class="comment-row stack">
      <label for="editor-comment">Comment</label>
      <input id="editor-comment" ref=${commentRef} type="text" maxlength="1024" placeholder="why this change (optional)" />
    </div>
    <div class="buttons">
      <button type="submit" class="primary" disabled=${busy}>${busy ? 'Saving…' : 'Save and apply'}</button>
      ${saved &&
      html`<p class="success" role="status" data-version=${saved.version}>${saved.text}</p>`}
    </div>
  </form>`;
}

/** "Add field" for one object: a key and a JSON value (plain text if it is not JSON). */
function AddField({ ptr, obj, onAdd }) {
  const [key, setKey] = useState('');
  const [val, setVal] = useState('');
  const [err, setErr] = useState(null);
  const kid = idOf('ak', ptr);
  const vid = idOf('av', ptr);
  const add = () => {
    const k = key.trim();
    if (!k) return setErr('Give the field a name.');
    if (Object.prototype.hasOwnProperty.call(obj, k)) return setErr(`"${k}" is already there.`);
    let v = val.trim();
    try {
      v = v === '' ? '' : parse(v);
    } catch {
      /* not JSON: taken as a string, so `5s` needs no quotes */
    }
    onAdd(k, v);
    setKey('');
    setVal('');
    setErr(null);
  };
  // Enter in either box adds the field instead of submitting the whole form.
  const onKey = (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      add();
    }
  };
  return html`<div class="add-field" data-add-field=${ptr}>
    <label for=${kid}>New field</label>
    <input id=${kid} type="text" value=${key} onInput=${(e) => setKey(e.currentTarget.value)} onKeyDown=${onKey} spellcheck=${false} />
    <label for=${vid}>Value (JSON)</label>
    <input id=${vid} type="text" value=${val} onInput=${(e) => setVal(e.currentTarget.value)} onKeyDown=${onKey}
      placeholder='"5s", 3, true, {}, []' spellcheck=${false} />
    <button type="button" class="small" onClick=${add}>Add field</button>
    ${err && html`<p class="field-error" role="alert">${err}</p>`}
  </div>`;
}
