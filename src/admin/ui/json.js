// json.js: JSON without losing numbers. JSON.parse turns every number into
// a float64, so an id such as 1234567890123456789 (a valid TOML integer the
// gateway keeps exactly) comes back from a round trip through the UI as
// 1234567890123456800, and "1.0" (a TOML float) as "1" (an integer). Here a
// number whose text a float64 does not reproduce is kept as a JsonNumber
// holding its source text, and written back verbatim.

/** A number kept as its source text (it does not survive a float64). */
export class JsonNumber {
  constructor(text) {
    this.text = text;
  }
  // Arithmetic and comparisons see the nearest float64; only its text is exact.
  valueOf() {
    return Number(this.text);
  }
  toString() {
    return this.text;
  }
  // Should a plain JSON.stringify meet one: exact where the browser can say
  // so (JSON.rawJSON), the nearest float64 elsewhere.
  toJSON() {
    return JSON.rawJSON ? JSON.rawJSON(this.text) : Number(this.text);
  }
}

const JSON_NUMBER = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

/**
 * `text` as a number: a plain one when a float64 writes it back the same,
 * a JsonNumber when it is JSON a float64 would change, else Number(text)
 * (an input's "007" or ".5" is no JSON to keep; NaN when no number at all).
 */
export function numberOf(text) {
  const n = Number(text);
  return String(n) === text || !JSON_NUMBER.test(text) ? n : new JsonNumber(text);
}

export const isNumber = (v) => typeof v === 'number' || v instanceof JsonNumber;

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const SPACE = /[ \t\n\r]*/y;

/**
 * Like JSON.parse (same errors, from JSON.parse itself), but numbers that a
 * float64 would change are JsonNumbers.
 */
export function parse(text) {
  // The native parser checks the syntax and gives its usual error messages;
  // the walk below then only ever sees valid JSON.
  JSON.parse(text);
  let i = 0;
  const at = (re) => {
    re.lastIndex = i;
    const m = re.exec(text);
    i = re.lastIndex;
    return m[0];
  };
  // A string ends at the first quote not escaped by an odd run of
  // backslashes (indexOf, not a regex: a mock body may be megabytes long).
  const string = () => {
    let j = i + 1;
    for (;;) {
      j = text.indexOf('"', j);
      let k = j;
      while (text[k - 1] === '\\') k--;
      if ((j - k) % 2 === 0) break;
      j++;
    }
    const s = JSON.parse(text.slice(i, j + 1));
    i = j + 1;
    return s;
  };
  const value = () => {
    at(SPACE);
    const c = text[i];
    let v;
    if (c === '{') {
      i++;
      v = {};
      at(SPACE);
      if (text[i] === '}') i++;
      else
        for (;;) {
          at(SPACE);
          const k = string();
          at(SPACE);
          i++; // ':'
          // A key named __proto__ is an own property, as JSON.parse makes it.
          Object.defineProperty(v, k, { value: value(), writable: true, enumerable: true, configurable: true });
          if (text[i++] === '}') break; // else ','
        }
    } else if (c === '[') {
      i++;
      v = [];
      at(SPACE);
      if (text[i] === ']') i++;
      else
        for (;;) {
          v.push(value());
          if (text[i++] === ']') break;
        }
    } else if (c === '"') v = string();
    else if (c === 't') (v = true), (i += 4);
    else if (c === 'f') (v = false), (i += 5);
    else if (c === 'n') (v = null), (i += 4);
    else v = numberOf(at(NUMBER));
    at(SPACE);
    return v;
  };
  return value();
}

/** Like JSON.stringify(value, null, indent), writing JsonNumbers verbatim. */
export function stringify(value, indent = 0) {
  const pad = ' '.repeat(indent);
  const write = (v, outer) => {
    if (v instanceof JsonNumber) return v.text;
    if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
    if (typeof v.toJSON === 'function') return write(v.toJSON(), outer);
    const inner = outer + pad;
    const [open, close] = pad ? [`\n${inner}`, `\n${outer}`] : ['', ''];
    const sep = pad ? `,\n${inner}` : ',';
    if (Array.isArray(v)) return v.length ? `[${open}${v.map((x) => write(x, inner)).join(sep)}${close}]` : '[]';
    const items = Object.keys(v)
      .filter((k) => v[k] !== undefined && typeof v[k] !== 'function')
      .map((k) => `${JSON.stringify(k)}:${pad ? ' ' : ''}${write(v[k], inner)}`);
    return items.length ? `{${open}${items.join(sep)}${close}}` : '{}';
  };
  return write(value, '');
}

/**
 * Whether two parsed documents hold the same values, as the gateway sees
 * them: key order does not matter; integers are compared exactly
 * (1234567890123456789 is not 1234567890123456790), other numbers as
 * float64, and an integer is never the same as a float (1 is not 1.0, as
 * in TOML).
 */
export function same(a, b) {
  if (isNumber(a) && isNumber(b)) {
    const int = (x) => (/^-?\d+$/.test(String(x)) ? BigInt(String(x)) : null);
    const [ia, ib] = [int(a), int(b)];
    if ((ia === null) !== (ib === null)) return false;
    return ia !== null ? ia === ib : Number(a) === Number(b);
  }
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return a === b;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && same(a[k], b[k]));
}
