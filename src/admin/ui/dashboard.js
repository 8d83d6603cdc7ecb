// dashboard.js: live figures from GET /stats, asked every second. The first
// answer brings up to 15 minutes of samples; after that `?since=SEQ` brings
// only the new ones, kept client-side (at most 900). One timer, a
// setTimeout re-armed after each answer (so slow answers never pile up),
// cleared when the view goes away or is paused.

import { useState, useEffect, useRef } from './vendor/hooks.module.js';
import { html, api, status, ErrorText, num, ms, relTime, absTime } from './api.js';
import { LineChart } from './chart.js';

const KEEP = 900;
// Lines per chart: the gateway sends the 50 busiest names per sample.
const MAX_SERIES = 50;

/**
 * The names a chart draws: those of the newest sample first (the busiest
 * now), then those seen most recently before, up to MAX_SERIES; sorted so
 * a name keeps its colour. Not the union of every name ever seen: when the
 * busiest set moves across hundreds of services, that grows towards all of
 * them, each redrawn every second.
 */
function chartNames(samples, group) {
  const names = new Set();
  for (let i = samples.length - 1; i >= 0 && names.size < MAX_SERIES; i--)
    for (const n of Object.keys(samples[i][group])) {
      if (names.size >= MAX_SERIES) break;
      names.add(n);
    }
  return [...names].sort();
}

/** The answer's `series` as one object per sample (easy to append and trim). */
function samplesOf(series) {
  const out = [];
  if (!series || !series.t) return out;
  const pick = (group, name, i) => {
    const o = {};
    for (const [k, arr] of Object.entries(group[name])) o[k] = arr ? arr[i] : null;
    return o;
  };
  for (let i = 0; i < series.t.length; i++) {
    const s = {};
    for (const name of Object.keys(series.services || {})) s[name] = pick(series.services, name, i);
    const e = {};
    for (const name of Object.keys(series.endpoints || {})) e[name] = pick(series.endpoints, name, i);
    out.push({
      seq: series.seq ? series.seq[i] : null,
      t: series.t[i],
      s,
      e,
      auth: series.auth_failures_rps ? series.auth_failures_rps[i] : null,
      thr: series.throttled_rps ? series.throttled_rps[i] : null,
    });
  }
  return out;
}

/** Polls /stats; returns {stats, samples, error, paused, setPaused}. */
function useStats() {
  const [stats, setStats] = useState(null);
  const [samples, setSamples] = useState([]);
  const [error, setError] = useState(null);
  const [paused, setPausedState] = useState(false);
  const ctl = useRef({ timer: null, since: null, stopped: false, paused: false });

  const tick = async () => {
    const c = ctl.current;
    c.timer = null;
    let delay = 2000;
    // Behind the login form (a 401) the dashboard waits instead of asking
    // again and again with a token the gateway refuses.
    if (status.needLogin) {
      if (!c.stopped && !c.paused) c.timer = setTimeout(tick, 1000);
      return;
    }
    try {
      const r = await api('GET', '/stats' + (c.since != null ? `?since=${c.since}` : ''));
      if (c.stopped) return;
      // A gateway restart starts seq over: drop what we have and take its history.
      const restarted = c.since != null && r.seq < c.since;
      const fresh = samplesOf(r.series);
      setSamples((old) => {
        const base = restarted ? [] : old;
        const lastSeq = base.length ? base[base.length - 1].seq : -Infinity;
        const add = fresh.filter((s) => s.seq == null || s.seq > lastSeq);
        const all = add.length ? base.concat(add) : base;
        return all.length > KEEP ? all.slice(all.length - KEEP) : all;
      });
      c.since = restarted ? null : r.seq;
      setStats(r);
      setError(null);
      delay = r.interval_ms || 1000;
    } catch (e) {
      if (c.stopped) return;
      setError(e);
    }
    if (!c.stopped && !c.paused && c.timer == null) c.timer = setTimeout(tick, delay);
  };

  useEffect(() => {
    const c = ctl.current;
    c.stopped = false;
    tick();
    return () => {
      c.stopped = true;
      clearTimeout(c.timer);
      c.timer = null;
    };
  }, []);

  const setPaused = (p) => {
    const c = ctl.current;
    c.paused = p;
    setPausedState(p);
    clearTimeout(c.timer);
    c.timer = null;
    if (!p) tick(); // since= fills the gap from the gateway's own history
  };
  return { stats, samples, error, paused, setPaused };
}

function instancesText(i) {
  if (!i) return '—';
  const total = (i.serving || 0) + (i.ejected || 0) + (i.unhealthy || 0);
  const extra = [];
  if (i.ejected) extra.push(`${i.ejected} ejected`);
  if (i.unhealthy) extra.push(`${i.unhealthy} unhealthy`);
  return `${i.serving || 0}/${total}${extra.length ? ` (${extra.join(', ')})` : ''}`;
}

function Summary({ g }) {
  if (!g) return null;
  return html`<ul class="summary" aria-label="Gateway">
    <li>Config version <b>${g.config_version}</b></li>
    <li>Last apply ${
      // Anything before 2000 is not a wall-clock time; say so instead of "20000 d ago".
      g.applied_ms > 946684800000
        ? html`<b>${relTime(g.applied_ms)}</b> <span class="muted">(${absTime(g.applied_ms)})</span>`
        : html`<b>unknown</b> <span class="muted">(applied_ms ${g.applied_ms})</span>`
    }</li>
    <li><b>${g.workers}</b> worker${g.workers === 1 ? '' : 's'}</li>
    <li>Open HTTP <b>${g.http_open}</b></li>
    <li>Open WebSocket <b>${g.ws_open}</b></li>
    <li class="muted wrap">wasp ${g.version} · node ${g.node} · public ${g.listen} · up since ${absTime(g.started_ms)}</li>
  </ul>`;
}

export function Dashboard() {
  const { stats, samples, error, paused, setPaused } = useStats();
  const services = stats ? [...(stats.services || [])].sort((a, b) => a.name.localeCompare(b.name)) : [];
  const endpoints = stats ? [...(stats.endpoints || [])].sort((a, b) => a.name.localeCompare(b.name)) : [];
  const t = samples.map((s) => s.t);
  const svcNames = chartNames(samples, 's');
  const epNames = chartNames(samples, 'e');
  const bySvc = (metric) => svcNames.map((n) => ({ name: n, values: samples.map((s) => (s.s[n] ? s.s[n][metric] : null)) }));
  const byEp = (metric) => epNames.map((n) => ({ name: n, values: samples.map((s) => (s.e[n] ? s.e[n][metric] : null)) }));
  const k = stats && stats.kafka;

  return html`<section>
    <div class="title-row">
      <h1>Dashboard</h1>
      <span class="muted" role="status">${paused ? 'Paused.' : error ? '' : stats ? `Live, every ${(stats.interval_ms || 1000) / 1000} s; rates over ${stats.window_s} s.` : ''}</span>
      <button type="button" aria-pressed=${paused ? 'true' : 'false'} onClick=${() => setPaused(!paused)}>${paused ? 'Resume' : 'Pause'}</button>
    </div>
    ${error && html`<${ErrorText} error=${error} prefix="The dashboard feed (GET /stats) did not answer" />`}
    ${!stats && !error && html`<p class="muted" role="status">Loading the dashboard…</p>`}
    ${stats &&
    html`<${Summary} g=${stats.gateway} />
      <h2 id="dash-services">Services</h2>
      <div class="table-wrap">
        <table class="services" aria-labelledby="dash-services">
          <thead><tr><th>Service</th><th class="num">Req/s</th><th class="num">4xx/s</th><th class="num">5xx/s</th><th class="num">p50</th><th class="num">p99</th><th>Instances</th><th class="num">Throttled/s</th></tr></thead>
          <tbody>
            ${services.map(
              (s) => html`<tr key=${s.name} data-service=${s.name}>
                <td><a href=${'#/services/' + encodeURIComponent(s.name)}>${s.name}</a></td>
                <td class="num" data-metric="rps">${num(s.rps)}</td>
                <td class="num" data-metric="rps_4xx">${num(s.rps_4xx)}</td>
                <td class="num" data-metric="rps_5xx">${num(s.rps_5xx)}</td>
                <td class="num" data-metric="p50_ms">${ms(s.p50_ms)}</td>
                <td class="num" data-metric="p99_ms">${ms(s.p99_ms)}</td>
                <td>${instancesText(s.instances)}</td>
                <td class="num" data-metric="throttled_rps">${num(s.throttled_rps)}</td>
              </tr>`,
            )}
            ${services.length === 0 && html`<tr><td colspan="8" class="muted">No services.</td></tr>`}
          </tbody>
        </table>
      </div>
      <h2 id="dash-endpoints">WebSocket endpoints</h2>
      <div class="table-wrap">
        <table class="endpoints" aria-labelledby="dash-endpoints">
          <thead><tr><th>Endpoint</th><th class="num">Open</th><th class="num">Events/s</th><th class="num">Messages/s</th><th class="num">Failures/s</th><th class="num">Kafka ok/s</th><th class="num">Kafka failed/s</th></tr></thead>
          <tbody>
            ${endpoints.map(
              (e) => html`<tr key=${e.name} data-endpoint=${e.name}>
                <td><a href=${'#/endpoints/' + encodeURIComponent(e.name)}>${e.name}</a> <span class="muted">${e.path}</span></td>
                <td class="num" data-metric="open">${e.open}</td>
                <td class="num" data-metric="events_rps">${num(e.events_rps)}</td>
                <td class="num" data-metric="messages_rps">${num(e.messages_rps)}</td>
                <td class="num" data-metric="failures_rps">${num(e.failures_rps)}</td>
                <td class="num">${num(e.kafka_delivered_rps)}</td>
                <td class="num">${num(e.kafka_failed_rps)}</td>
              </tr>`,
            )}
            ${endpoints.length === 0 && html`<tr><td colspan="7" class="muted">No endpoints.</td></tr>`}
          </tbody>
        </table>
      </div>
      <ul class="summary">
        <li>Auth failures <b>${num(stats.auth && stats.auth.failures_rps)}/s</b> <span class="muted">(${stats.auth ? stats.auth.failures_total : 0} in all)</span></li>
        <li>Throttled <b>${num(stats.throttled && stats.throttled.rps)}/s</b> <span class="muted">(${stats.throttled ? stats.throttled.total : 0} in all)</span></li>
        <li>Kafka: ${k
          ? html`producer <b>${k.producer}</b>, delivered ${num(k.delivered_rps)}/s, failed ${num(k.failed_rps)}/s, queue ${k.queue}, push lag ${k.push_lag}, replies lag ${k.replies_lag}`
          : html`<span class="muted">not configured</span>`}</li>
      </ul>
      <div class="charts">
        <${LineChart} title="Requests per second by service" unit="req/s" t=${t} series=${bySvc('rps')} />
        <${LineChart} title="p99 latency by service" unit="ms" t=${t} series=${bySvc('p99_ms')} digits=${2} />
        <${LineChart} title="WebSocket events per second" unit="events/s" t=${t} series=${byEp('events_rps')} />
        <${LineChart} title="Auth failures and throttled per second" unit="/s" t=${t}
          series=${[
            { name: 'auth failures', values: samples.map((s) => s.auth) },
            { name: 'throttled', values: samples.map((s) => s.thr) },
          ]} />
      </div>`}
  </section>`;
}
