// chart.js: a small SVG line chart: time on x (a fixed window ending at the
// newest sample, so lines scroll), a few labelled gridlines on y, a legend
// with each series' latest value as text, and a hover read-out. Colours come
// from CSS classes (c0..c5), never inline styles.

import { useState } from './vendor/hooks.module.js';
import { html, clockTime } from './api.js';

const W = 600;
const H = 190;
const M = { l: 46, r: 10, t: 10, b: 22 };

/** A round upper bound for the y axis: 1, 2, 2.5, 5 × 10^n. */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function fmt(v, digits) {
  if (v == null || Number.isNaN(v)) return '—';
  if (Math.abs(v) >= 1000) return (v / 1000).toFixed(1) + 'k';
  return Number(v).toFixed(digits);
}

/**
 * props: title, unit ("req/s"), t (ms timestamps, oldest first), series
 * [{name, values (aligned with t; null = no sample)}], windowMs, digits.
 */
export function LineChart({ title, unit, t, series, windowMs = 15 * 60 * 1000, digits = 1 }) {
  const [hover, setHover] = useState(null); // index into t
  const id = 'chart-' + title.replace(/[^A-Za-z0-9]+/g, '-').toLowerCase();
  const tMax = t.length ? t[t.length - 1] : Date.now();
  const tMin = tMax - windowMs;
  let vMax = 0;
  for (const s of series) for (const v of s.values) if (v != null && v > vMax) vMax = v;
  const yMax = niceMax(vMax);
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const x = (ms) => M.l + ((ms - tMin) / windowMs) * pw;
  const y = (v) => M.t + ph - (v / yMax) * ph;

  const paths = series.map((s) => {
    let d = '';
    let pen = false;
    for (let i = 0; i < t.length; i++) {
      const v = s.values[i];
      if (v == null || t[i] < tMin) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${x(t[i]).toFixed(1)} ${y(v).toFixed(1)}`;
      pen = true;
    }
    return d;
  });

  // The newest sample's value (null, shown as —, when the series had none then).
  const last = (s) => (s.values.length ? s.values[s.values.length - 1] : null);
  const latest = series.map((s) => `${s.name} ${fmt(last(s), digits)} ${unit}`).join(', ');
  const label = `${title}, last 15 minutes. Latest: ${latest || 'no data yet'}.`;

  const yTicks = [0, yMax / 2, yMax];
  const xTicks = [0, 5, 10, 15].map((m) => tMax - windowMs + m * 60 * 1000);

  const onMove = (e) => {
    if (!t.length) return;
    const r = e.currentTarget.getBoundingClientRect();
    const ms = tMin + (((e.clientX - r.left) / r.width) * W - M.l) / pw * windowMs;
    let best = 0;
    for (let i = 1; i < t.length; i++) if (Math.abs(t[i] - ms) < Math.abs(t[best] - ms)) best = i;
    setHover(best);
  };

  return html`<figure class="chart">
    <figcaption id=${id}>${title}</figcaption>
    <svg viewBox=${`0 0 ${W} ${H}`} role="img" aria-label=${label} onMouseMove=${onMove} onMouseLeave=${() => setHover(null)}>
      ${yTicks.map(
        (v) => html`<line class="grid" x1=${M.l} x2=${W - M.r} y1=${y(v)} y2=${y(v)} />
          <text class="axis-label" x=${M.l - 6} y=${y(v) + 4} text-anchor="end">${fmt(v, v % 1 ? 1 : 0)}</text>`,
      )}
      ${xTicks.map(
        (ms, i) => html`<text class="axis-label" x=${x(ms)} y=${H - 6} text-anchor=${i === 0 ? 'start' : i === 3 ? 'end' : 'middle'}>${i === 3 ? 'now' : clockTime(ms).slice(0, 5)}</text>`,
      )}
      ${paths.map((d, i) => d && html`<path class=${`line c${i % 6}${i >= 6 ? ' dash' : ''}`} d=${d} />`)}
      ${!t.length && html`<text class="empty" x=${W / 2} y=${H / 2} text-anchor="middle">Waiting for samples…</text>`}
      ${hover != null && t[hover] >= tMin && html`<line class="cursor" x1=${x(t[hover])} x2=${x(t[hover])} y1=${M.t} y2=${M.t + ph} />`}
    </svg>
    <ul class="legend" aria-label=${`${title}: latest values`}>
      ${series.map(
        (s, i) => html`<li><span class=${`sw c${i % 6}`} aria-hidden="true"></span>${s.name}: <b>${fmt(hover != null ? s.values[hover] : last(s), digits)}</b> ${unit}</li>`,
      )}
      ${series.length === 0 && html`<li class="muted">nothing to show</li>`}
    </ul>
    ${hover != null && html`<p class="muted chart-at" aria-live="off">at ${clockTime(t[hover])}</p>`}
  </figure>`;
}
