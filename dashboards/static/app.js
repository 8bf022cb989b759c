// The dashboard's pages. Served as a file so the Content-Security-Policy can forbid inline script.
// Every user-provided string goes into the DOM through textContent (never innerHTML) and into
// plotly through esc(), because plotly renders a subset of HTML tags in its labels.
'use strict';

const BODY = document.body;
const POLL_MS = Number(BODY.dataset.pollMs) || 3000;
const enc = encodeURIComponent;

function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
  return body;
}

function fmt(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'number') {
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    return (a !== 0 && (a < 1e-3 || a >= 1e5)) ? v.toExponential(4) : v.toPrecision(6).replace(/\.?0+$/, '');
  }
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function fmtDuration(s) {
  if (s === null || s === undefined) return '–';
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function fmtTime(iso) {
  if (!iso) return '–';
  return iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function showError(node, err) {
  if (!node) return;
  node.hidden = !err;
  node.textContent = err ? String(err.message || err) : '';
}

const PLOT_CONFIG = { displaylogo: false, responsive: true };
function draw(id, traces, layout) {
  const div = document.getElementById(id);
  if (!div) return;
  const base = { margin: { l: 60, r: 20, t: 20, b: 50 }, hovermode: 'closest', font: { size: 12 } };
  return Plotly.react(div, traces, Object.assign(base, layout || {}), PLOT_CONFIG);
}

function note(id, text) {
  const n = document.getElementById(id);
  if (n) n.textContent = text || '';
}

function setLive(text) { note('live-status', text); }

// Runs fn now and every POLL_MS while keepGoing() holds; never two calls at once.
function poll(fn, keepGoing) {
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try { await fn(); setLive(`live, updated ${new Date().toLocaleTimeString()}`); }
    catch (e) { setLive(`update failed: ${e.message}`); }
    finally { busy = false; }
  };
  tick();
  const timer = setInterval(() => { if (keepGoing()) tick(); }, POLL_MS);
  return () => clearInterval(timer);
}

const isBetter = (dir, a, b) => (dir === 'maximize' ? a > b : a < b);

// ------------------------------------------------------------------------------------ studies

// A RUNNING study whose trials stopped heartbeating has no live controller: its duration stops
// at its last activity, and its state says so.
const stateText = (s) => (s.stale ? `${s.state} (no heartbeat since ${fmtTime(s.last_activity_at)})` : s.state);
const staleNote = (s) => (s.stale ? 'its controller stopped without marking the study: run `search resume` to finish it' : null);

function studiesPage() {
  const tbody = document.querySelector('#studies tbody');
  const checked = new Set();
  const render = (studies) => {
    tbody.replaceChildren();
    document.getElementById('studies-empty').hidden = studies.length > 0;
    for (const s of studies) {
      const box = el('input', { type: 'checkbox', name: 'study', value: s.name, class: 'pick' });
      box.checked = checked.has(s.name);
      box.addEventListener('change', () => { if (box.checked) checked.add(s.name); else checked.delete(s.name); });
      const objective = s.metrics.map((m, i) => `${m} (${s.directions[i].slice(0, 3)})`).join(', ');
      tbody.append(el('tr', { 'data-study': s.name },
        el('td', {}, box),
        el('td', {}, el('a', { href: `/studies/${enc(s.name)}`, text: s.name })),
        el('td', { text: s.algorithm || '–' }),
        el('td', { class: `state-${s.state}`, text: stateText(s), title: staleNote(s) }),
        el('td', { class: 'num', text: s.budget ? `${s.done} / ${s.budget}` : String(s.done) }),
        el('td', { class: 'num', text: String(s.running) }),
        el('td', { class: 'num', text: String(s.failed) }),
        el('td', { class: 'num', text: fmt(s.best) }),
        el('td', { text: objective }),
        el('td', { text: fmtTime(s.started_at) }),
        el('td', { class: 'num', text: fmtDuration(s.duration_s) })));
    }
  };
  poll(async () => {
    try { render(await getJSON('/api/v1/studies')); showError(document.getElementById('error'), null); }
    catch (e) { showError(document.getElementById('error'), e); throw e; }
  }, () => true);
}

// -------------------------------------------------------------------------------------- study

// Ids of workers and nodes run to 56 hex characters: a prefix is shown, the full id on hover.
function shortId(id, n = 8) {
  if (!id) return '';
  const s = String(id);
  return s.length > n + 2 ? `${s.slice(0, n)}…` : s;
}

function idCell(node, worker) {
  const td = el('td', { class: 'id' });
  const parts = [node, worker].filter(Boolean);
  if (!parts.length) { td.textContent = '–'; return td; }
  parts.forEach((p, i) => {
    if (i) td.append(' / ');
    td.append(el('span', { title: String(p), text: shortId(p) }));
  });
  return td;
}

const STATE_STYLE = {
  COMPLETE: { color: '#4c78a8', symbol: 'circle' },
  PRUNED: { color: '#9a9a9a', symbol: 'x' },
  PAUSED: { color: '#2a9d8f', symbol: 'diamond' },
  RUNNING: { color: '#e45756', symbol: 'circle-open' },
  WAITING: { color: '#eeca3b', symbol: 'square-open' },
  FAILED: { color: '#b279a2', symbol: 'x-thin-open' },
};
const STATE_WORD = { PRUNED: 'pruned', PAUSED: 'paused', RUNNING: 'running', WAITING: 'waiting', FAILED: 'failed' };

function studyPage() {
  const name = BODY.dataset.study;
  const api = `/api/v1/studies/${enc(name)}`;
  const rungs = (BODY.dataset.rungs || '').split(',').filter(Boolean).map(Number);
  const state = { offset: 0, sort: 'number', order: 'asc', study: null, curvesLimit: 100, cursor: null,
                  params: null, watch: new Set(), hist: null, curves: null, loaded: false,
                  lastParams: 0, lastImportance: 0, lastTimeline: 0, paramsDirty: false };

  // -- summary cards and the running table (from the updates answer)
  // paused and waiting only when there are some; the objectives when there are several
  const summaryFields = (s) => [
    ['best', fmt(s.best)], ['done', s.budget ? `${s.done} / ${s.budget}` : String(s.done)],
    ['running', String(s.running)], ['pruned', String(s.counts.PRUNED)],
    ...(s.paused ? [['paused', String(s.paused)]] : []), ...(s.waiting ? [['waiting', String(s.waiting)]] : []),
    ['failed', String(s.failed)], ['state', stateText(s)], ['algorithm', s.algorithm || '–'],
    ...(s.metrics.length > 1 ? [['objectives', s.metrics.map((m, i) => `${m} (${s.directions[i].slice(0, 3)})`).join(', ')]] : []),
    ['started', fmtTime(s.started_at)], ['duration', fmtDuration(s.duration_s)],
  ];

  function renderSummary(s) {
    state.study = Object.assign(state.study || {}, s);
    const cards = summaryFields(s).map(([k, v]) => el('div', { class: `card card-${k}` },
      el('div', { class: 'label', text: k === 'best' ? `best ${s.metrics[0]}` : k }),
      el('div', { id: `summary-${k}`, class: 'value', text: v })));
    document.getElementById('summary').replaceChildren(...cards);
  }

  function renderRunning(running) {
    const now = running.map((t) => {
      const latest = t.latest ? Object.entries(t.latest.metrics).slice(0, 4).map(([k, v]) => `${k}=${fmt(v)}`).join(', ') : '–';
      return el('tr', { 'data-number': String(t.number) },
        el('td', {}, el('a', { href: `/studies/${enc(name)}/trials/${t.number}`, text: String(t.number) })),
        el('td', { class: 'num', text: String(t.attempt) }),
        el('td', { class: 'num', text: t.last_step === null ? '–' : String(t.last_step) }),
        el('td', { text: latest }), idCell(t.node, t.worker),
        el('td', { class: 'num', text: fmtDuration(t.duration_s) }));
    });
    document.querySelector('#running tbody').replaceChildren(...now);
    document.getElementById('running-empty').hidden = running.length > 0;
    note('running-count', running.length ? `(${running.length})` : '');
  }

  // -- optimisation history: every trial, the stopped ones at their last reported value
  function drawHistory() {
    const h = state.hist;
    if (!h) return;
    const groups = {};
    for (const [n, p] of h.points) (groups[p.state] = groups[p.state] || []).push([n, p]);
    const traces = [];
    for (const st of ['COMPLETE', 'PRUNED', 'PAUSED', 'RUNNING', 'WAITING', 'FAILED']) {
      const pts = (groups[st] || []).sort((a, b) => a[0] - b[0]);
      if (!pts.length) continue;
      const style = STATE_STYLE[st];
      traces.push({ x: pts.map(([n]) => n), y: pts.map(([, p]) => p.value), customdata: pts.map(([n]) => n),
        text: pts.map(([n, p]) => (st === 'COMPLETE' ? `trial ${n}` : `trial ${n}, ${STATE_WORD[st]}, last report at step ${p.step ?? '–'}`)),
        type: 'scatter', mode: 'markers', name: st === 'COMPLETE' ? 'complete' : `${STATE_WORD[st]} (last report)`,
        hoverinfo: 'text+y', marker: { size: st === 'COMPLETE' ? 7 : 7, color: style.color, symbol: style.symbol,
                                        opacity: st === 'COMPLETE' ? 0.9 : 0.75 } });
    }
    const line = bestLine(h);
    if (line.x.length) {
      traces.push({ x: line.x, y: line.y, type: 'scatter', mode: 'lines', name: 'best so far', hoverinfo: 'y',
                    line: { shape: 'hv', color: '#e45756', width: 2 } });
    }
    const top = Math.max(0, ...h.points.keys());
    draw('plot-history', traces, { xaxis: { title: { text: 'trial number' }, zeroline: false, dtick: top < 20 ? 1 : undefined },
                                  yaxis: { title: { text: esc(h.metric) } },
                                  legend: { orientation: 'h', y: 1.12 }, margin: { l: 60, r: 20, t: 30, b: 45 } });
    const div = document.getElementById('plot-history');
    if (!div.dataset.wired) {
      div.dataset.wired = '1';
      div.on('plotly_click', (ev) => {
        const n = ev.points[0] && ev.points[0].customdata;
        if (n !== undefined) window.location.href = `/studies/${enc(name)}/trials/${enc(n)}`;
      });
    }
    const nStopped = [...h.points.values()].filter((p) => p.state !== 'COMPLETE').length;
    const thinned = h.shown < h.total || h.shownStopped < h.totalStopped;
    note('history-note', `${h.total} complete trials and ${h.totalStopped + Math.max(0, nStopped - h.shownStopped)} others at their last report` +
      (thinned ? `; ${h.points.size} points drawn: above ${h.maxPoints} points of a kind the server keeps each screen column's lowest and highest value` : '') +
      '; click a point to open its trial');
  }

  // The best-so-far staircase over the server's exact staircase plus trials completed since.
  function bestLine(h) {
    const pts = h.bestLine.map(([n, v]) => [n, v]);
    for (const [n, p] of h.points) if (p.state === 'COMPLETE' && p.live) pts.push([n, p.value]);
    pts.sort((a, b) => a[0] - b[0]);
    const x = [], y = [];
    let cur = null;
    for (const [n, v] of pts) {
      if (cur === null || isBetter(h.direction, v, cur)) { cur = v; x.push(n); y.push(v); }
    }
    const last = Math.max(0, ...h.points.keys());
    if (x.length && last > x[x.length - 1]) { x.push(last); y.push(cur); }
    return { x, y };
  }

  async function loadHistory() {
    const d = await getJSON(`${api}/history`);
    const points = new Map();
    d.numbers.forEach((n, i) => points.set(n, { state: 'COMPLETE', value: d.values[i] }));
    d.stopped.numbers.forEach((n, i) => points.set(n, { state: d.stopped.states[i], value: d.stopped.values[i], step: d.stopped.steps[i] }));
    const prev = state.hist;
    state.hist = { metric: d.metric, direction: d.direction, points, bestLine: d.best_line.numbers.map((n, i) => [n, d.best_line.values[i]]),
                   total: d.total, shown: d.shown, totalStopped: d.total_stopped, shownStopped: d.shown_stopped, maxPoints: d.max_points };
    if (prev) for (const [n, p] of prev.points) if (p.live && !points.has(n)) points.set(n, p);
    drawHistory();
  }

  // -- trial table
  function columns(s) {
    const cols = [{ key: 'number', label: '#' }, { key: 'state', label: 'state' }];
    s.metrics.forEach((m, i) => cols.push({ key: i === 0 ? 'value' : `values.${i}`, label: m, get: (r) => r.values && r.values[i] }));
    for (const p of s.space) cols.push({ key: `params.${p.name}`, label: p.name, get: (r) => r.params[p.name] });
    cols.push({ key: 'last_step', label: 'last step' });
    cols.push({ key: 'attempt', label: 'attempt' });
    cols.push({ key: 'started_at', label: 'started', get: (r) => fmtTime(r.started_at) });
    cols.push({ key: 'finished_at', label: 'duration', get: (r) => fmtDuration(r.duration_s) });
    cols.push({ key: 'node', label: 'node / worker', cell: (r) => idCell(r.node, r.worker) });
    return cols;
  }

  function renderHead(cols) {
    const tr = el('tr');
    for (const c of cols) {
      const arrow = state.sort === c.key ? (state.order === 'asc' ? ' ▲' : ' ▼') : '';
      const th = el('th', { class: 'sortable', 'data-sort': c.key, text: c.label + arrow });
      th.addEventListener('click', () => {
        if (state.sort === c.key) state.order = state.order === 'asc' ? 'desc' : 'asc';
        else { state.sort = c.key; state.order = 'asc'; }
        state.offset = 0;
        refreshTable();
      });
      tr.append(th);
    }
    document.querySelector('#trials thead').replaceChildren(tr);
  }

  async function refreshTable() {
    const s = state.study;
    if (!s || !s.space) return;
    const size = Number(document.getElementById('page-size').value);
    const q = new URLSearchParams({ offset: state.offset, limit: size, sort: state.sort, order: state.order });
    const st = document.getElementById('state-filter').value;
    if (st) q.append('state', st);
    const f = document.getElementById('trial-filter').value.trim();
    if (f) q.append('filter', f);
    let page;
    try { page = await getJSON(`${api}/trials?${q}`); }
    catch (e) { showError(document.getElementById('trials-error'), e); return; }
    showError(document.getElementById('trials-error'), null);
    const cols = columns(s);
    renderHead(cols);
    const tbody = document.querySelector('#trials tbody');
    tbody.replaceChildren(...page.rows.map((r) => {
      const tr = el('tr', { 'data-number': String(r.number), class: `state-${r.state}` });
      for (const c of cols) {
        if (c.key === 'number') { tr.append(el('td', {}, el('a', { href: `/studies/${enc(name)}/trials/${r.number}`, text: String(r.number) }))); continue; }
        if (c.cell) { tr.append(c.cell(r)); continue; }
        const v = c.get ? c.get(r) : r[c.key];
        tr.append(el('td', { text: typeof v === 'string' ? v : fmt(v), title: c.key === 'state' && r.error ? r.error : null }));
      }
      return tr;
    }));
    const end = Math.min(page.offset + page.rows.length, page.total);
    note('page-info', page.total ? `${page.offset + 1}–${end} of ${page.total}` : 'no trials match');
    document.getElementById('prev-page').disabled = page.offset === 0;
    document.getElementById('next-page').disabled = end >= page.total;
  }

  function wireTable() {
    const reset = () => { state.offset = 0; refreshTable(); };
    document.getElementById('state-filter').addEventListener('change', reset);
    document.getElementById('page-size').addEventListener('change', reset);
    document.getElementById('trial-filter').addEventListener('keydown', (e) => { if (e.key === 'Enter') reset(); });
    document.getElementById('trial-filter').addEventListener('change', reset);
    document.getElementById('prev-page').addEventListener('click', () => {
      state.offset = Math.max(0, state.offset - Number(document.getElementById('page-size').value)); refreshTable();
    });
    document.getElementById('next-page').addEventListener('click', () => {
      state.offset += Number(document.getElementById('page-size').value); refreshTable();
    });
  }

  // -- parameters: complete and stopped trials together, coloured by state
  function allPoints(d) {
    const s = d.stopped || { numbers: [], values: [], states: [], steps: [], params: {} };
    const names = Object.keys(d.params);
    return {
      space: d.space, metric: d.metric, direction: d.direction,
      numbers: [...d.numbers, ...s.numbers], values: [...d.values, ...s.values],
      states: [...d.numbers.map(() => 'COMPLETE'), ...s.states], steps: [...d.numbers.map(() => null), ...s.steps],
      params: Object.fromEntries(names.map((k) => [k, [...d.params[k], ...((s.params || {})[k] || [])]])),
      shown: d.shown, total: d.total, stoppedShown: s.shown || 0, stoppedTotal: s.total || 0,
    };
  }

  function axisValues(p, vals) {
    if (p.type === 'categorical') {
      const labels = p.choices.map((c) => String(c));
      return { vals: vals.map((v) => labels.indexOf(String(v))), ticktext: labels.map(esc), tickvals: labels.map((_, i) => i) };
    }
    if (p.log) return { vals: vals.map((v) => (v > 0 ? Math.log10(v) : null)), log: true };
    return { vals: vals.map((v) => (typeof v === 'number' ? v : null)) };
  }

  // Parallel coordinates drawn as SVG lines (one trace per colour group) rather than plotly's
  // WebGL parcoords, whose shader compiler needs eval, which the CSP does not allow. Complete
  // trials are coloured by value (green best, red worst); stopped ones by their state.
  function drawParcoords(d) {
    const space = d.space.filter((p) => ['float', 'int', 'categorical'].includes(p.type));
    if (!space.length || !d.values.length) { note('parcoords-note', 'no trials with a value and declared parameters yet'); return; }
    const axes = space.map((p) => ({ p, ...axisValues(p, d.params[p.name]) }));
    axes.push({ p: { name: d.metric, type: 'objective' }, vals: d.values });
    const norm = axes.map((a) => {
      const finite = a.vals.filter((v) => v !== null && v !== undefined && Number.isFinite(v));
      let lo = Math.min(...finite), hi = Math.max(...finite);
      if (a.tickvals) { lo = 0; hi = Math.max(1, a.tickvals.length - 1); }
      if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
      return { lo, hi };
    });
    const doneVals = d.values.filter((_, i) => d.states[i] === 'COMPLETE');
    const vmin = Math.min(...doneVals), vmax = Math.max(...doneVals);
    const colours = ['#1a9850', '#91cf60', '#d9ef8b', '#fee08b', '#fc8d59', '#d73027'];
    const groups = {};
    d.values.forEach((v, i) => {
      const st = d.states[i];
      let key = st;
      if (st === 'COMPLETE') {
        let r = vmax > vmin ? (v - vmin) / (vmax - vmin) : 0;
        if (d.direction === 'maximize') r = 1 - r;
        key = `band${Math.min(colours.length - 1, Math.max(0, Math.floor(r * colours.length)))}`;
      }
      const g = groups[key] || (groups[key] = { x: [], y: [], text: [] });
      axes.forEach((a, j) => {
        const val = a.vals[i];
        g.x.push(j);
        g.y.push(val === null || val === undefined ? null : (val - norm[j].lo) / (norm[j].hi - norm[j].lo));
        g.text.push(`trial ${d.numbers[i]} (${st.toLowerCase()})`);
      });
      g.x.push(null); g.y.push(null); g.text.push('');
    });
    const order = ['PRUNED', 'PAUSED', 'FAILED', 'WAITING', 'RUNNING', ...colours.map((_, k) => `band${colours.length - 1 - k}`)];
    const traces = order.filter((k) => groups[k]).map((k) => {
      const band = k.startsWith('band');
      return { ...groups[k], type: 'scatter', mode: 'lines', hoverinfo: 'text', connectgaps: false,
        line: { color: band ? colours[Number(k.slice(4))] : STATE_STYLE[k].color, width: band ? 1.2 : 1, dash: band ? 'solid' : 'dot' },
        opacity: band ? 0.65 : 0.5, name: band ? 'complete' : STATE_WORD[k], showlegend: !band || k === 'band0', legendgroup: band ? 'complete' : k };
    });
    const annotations = [];
    axes.forEach((a, j) => {
      const lo = norm[j].lo, hi = norm[j].hi;
      const label = (v) => (a.tickvals ? (a.ticktext[Math.round(v)] ?? '') : fmt(a.log ? 10 ** v : v));
      annotations.push({ x: j, y: 1.08, text: `<b>${esc(a.p.name)}</b>`, showarrow: false, yref: 'y' });
      if (a.tickvals) {
        a.tickvals.forEach((tv) => annotations.push({ x: j, y: (tv - lo) / (hi - lo), text: label(tv), showarrow: false, xanchor: 'left', xshift: 4, font: { size: 10 } }));
      } else {
        annotations.push({ x: j, y: 0, text: label(lo), showarrow: false, xanchor: 'left', xshift: 4, font: { size: 10 } });
        annotations.push({ x: j, y: 1, text: label(hi), showarrow: false, xanchor: 'left', xshift: 4, font: { size: 10 } });
      }
    });
    const shapes = axes.map((_, j) => ({ type: 'line', x0: j, x1: j, y0: 0, y1: 1, line: { color: '#444', width: 1 } }));
    draw('plot-parcoords', traces, {
      xaxis: { showgrid: false, zeroline: false, showticklabels: false, range: [-0.2, axes.length - 0.6] },
      yaxis: { showgrid: false, zeroline: false, showticklabels: false, range: [-0.05, 1.15] },
      annotations, shapes, margin: { l: 20, r: 20, t: 10, b: 10 }, legend: { orientation: 'h', y: -0.02 },
    });
    note('parcoords-note', `${d.shown} of ${d.total} complete trials, coloured from best (green) to worst (red) ${d.metric}; ` +
      `${d.stoppedShown} of ${d.stoppedTotal} stopped, paused, running or failed trials dotted, coloured by state, at their last report` +
      (d.shown < d.total || d.stoppedShown < d.stoppedTotal ? ' (above the cap: the best half and an even spread of the rest)' : ''));
  }

  function drawSlice(d) {
    const space = d.space.filter((p) => ['float', 'int', 'categorical'].includes(p.type));
    if (!space.length || !d.values.length) return;
    const traces = [], layout = { showlegend: false, grid: { rows: 1, columns: space.length, pattern: 'independent' }, annotations: [] };
    space.forEach((p, i) => {
      const ax = i === 0 ? '' : String(i + 1);
      const xs = d.params[p.name].map((v) => (p.type === 'categorical' ? esc(String(v)) : v));
      traces.push({ x: xs, y: d.values, type: 'scatter', mode: 'markers', xaxis: `x${ax}`, yaxis: `y${ax}`,
                    marker: { size: 6, color: d.states.map((s) => STATE_STYLE[s].color), symbol: d.states.map((s) => STATE_STYLE[s].symbol), opacity: 0.8 },
                    text: d.numbers.map((n, k) => `trial ${n} (${d.states[k].toLowerCase()})`), hoverinfo: 'x+y+text' });
      layout[`xaxis${ax}`] = { title: { text: esc(p.name) }, type: p.type === 'categorical' ? 'category' : (p.log ? 'log' : 'linear') };
      layout[`yaxis${ax}`] = i === 0 ? { title: { text: esc(d.metric) } } : {};
    });
    draw('plot-slice', traces, layout);
  }

  function contourAxis(p, vals, bins) {
    if (p.type === 'categorical') {
      const labels = p.choices.map(String);
      return { idx: vals.map((v) => labels.indexOf(String(v))), centres: labels.map(esc), type: 'category' };
    }
    const t = (v) => (p.log ? Math.log10(v) : v);
    const lo = t(p.low), hi = t(p.high);
    const width = (hi - lo) / bins || 1;
    const centres = Array.from({ length: bins }, (_, i) => lo + (i + 0.5) * width);
    return {
      idx: vals.map((v) => (typeof v === 'number' ? Math.min(bins - 1, Math.max(0, Math.floor((t(v) - lo) / width))) : -1)),
      centres: p.log ? centres.map((c) => 10 ** c) : centres, type: p.log ? 'log' : 'linear',
    };
  }

  function drawContour(d) {
    const sx = document.getElementById('contour-x'), sy = document.getElementById('contour-y');
    const space = d.space.filter((p) => ['float', 'int', 'categorical'].includes(p.type));
    if (space.length < 2) { note('contour-note', 'a contour needs two declared parameters'); return; }
    if (!sx.options.length) {
      space.forEach((p) => { sx.append(el('option', { value: p.name, text: p.name })); sy.append(el('option', { value: p.name, text: p.name })); });
      sy.selectedIndex = 1;
      sx.addEventListener('change', () => drawContour(state.params));
      sy.addEventListener('change', () => drawContour(state.params));
    }
    const px = space.find((p) => p.name === sx.value), py = space.find((p) => p.name === sy.value);
    if (px === py) { note('contour-note', 'pick two different parameters'); return; }
    const BINS = 16;
    const ax = contourAxis(px, d.params[px.name], BINS), ay = contourAxis(py, d.params[py.name], BINS);
    const sum = ay.centres.map(() => ax.centres.map(() => 0)), cnt = ay.centres.map(() => ax.centres.map(() => 0));
    d.values.forEach((v, i) => {
      const a = ax.idx[i], b = ay.idx[i];
      if (a >= 0 && b >= 0) { sum[b][a] += v; cnt[b][a] += 1; }
    });
    const z = sum.map((row, b) => row.map((s, a) => (cnt[b][a] ? s / cnt[b][a] : null)));
    const pts = (p, vals) => vals.map((v) => (p.type === 'categorical' ? esc(String(v)) : v));
    draw('plot-contour', [
      { type: 'contour', x: ax.centres, y: ay.centres, z, connectgaps: true, colorscale: 'Viridis',
        reversescale: d.direction === 'maximize', colorbar: { title: { text: esc(d.metric) } }, contours: { coloring: 'heatmap' } },
      { type: 'scatter', mode: 'markers', x: pts(px, d.params[px.name]), y: pts(py, d.params[py.name]),
        marker: { size: 5, color: d.states.map((s) => (s === 'COMPLETE' ? 'white' : STATE_STYLE[s].color)), symbol: d.states.map((s) => STATE_STYLE[s].symbol),
                  line: { width: 1, color: 'black' } },
        text: d.numbers.map((n, k) => `trial ${n} (${d.states[k].toLowerCase()})`), hoverinfo: 'text', showlegend: false },
    ], { xaxis: { title: { text: esc(px.name) }, type: ax.type }, yaxis: { title: { text: esc(py.name) }, type: ay.type } });
    note('contour-note', `mean ${d.metric} per cell of a ${BINS}×${BINS} grid (gaps interpolated), over complete trials' values and ` +
      'the others\' last reports; white dots are complete trials, coloured ones stopped early');
  }

  async function refreshParams() {
    const d = allPoints(await getJSON(`${api}/params`));
    state.params = d;
    state.lastParams = Date.now();
    drawParcoords(d);
    drawSlice(d);
    drawContour(d);
  }

  async function refreshImportance() {
    state.lastImportance = Date.now();
    const d = await getJSON(`${api}/importance`);
    const names = Object.keys(d.importance);
    const basis = d.basis === 'step'
      ? `; ${d.n_trials} trials at step ${d.step} (${Object.entries(d.states || {}).map(([s, k]) => `${k} ${s.toLowerCase()}`).join(', ')}): most trials were stopped early, so all are compared where most of them got to`
      : `; ${d.n_trials} completed trials`;
    note('importance-method', d.method ? `${d.method}${basis}` : d.note);
    if (!names.length) return;
    draw('plot-importance', [{ type: 'bar', orientation: 'h', x: names.map((n) => d.importance[n]).reverse(),
      y: names.map(esc).reverse(), marker: { color: '#4c78a8' } }],
    { xaxis: { title: { text: 'importance' } }, margin: { l: 120, r: 20, t: 10, b: 40 } });
  }

  // -- learning curves: rung lines, and where each stopped or paused trial ended
  function drawCurves() {
    const c = state.curves;
    if (!c) return;
    const curves = [...c.byNumber.values()];
    const traces = curves.map((cv) => {
      const running = cv.state === 'RUNNING';
      return { x: cv.steps, y: cv.values, type: 'scatter', mode: 'lines', name: `trial ${cv.number}`,
        line: { width: running ? 2.5 : 1, color: running ? '#e45756' : (cv.state === 'COMPLETE' ? undefined : '#b0b0b0') },
        opacity: running ? 1 : (cv.state === 'COMPLETE' ? 0.7 : 0.55), showlegend: false, hoverinfo: 'name+x+y' };
    });
    for (const st of ['PRUNED', 'PAUSED', 'FAILED']) {
      const ends = curves.filter((cv) => cv.state === st && cv.steps.length);
      if (!ends.length) continue;
      traces.push({ x: ends.map((cv) => cv.steps[cv.steps.length - 1]), y: ends.map((cv) => cv.values[cv.values.length - 1]),
        text: ends.map((cv) => `trial ${cv.number} ${STATE_WORD[st]} at step ${cv.steps[cv.steps.length - 1]}`),
        type: 'scatter', mode: 'markers', hoverinfo: 'text+y', name: `${STATE_WORD[st]} here`,
        marker: { symbol: STATE_STYLE[st].symbol, size: 8, color: STATE_STYLE[st].color } });
    }
    const maxStep = Math.max(0, ...curves.map((cv) => cv.steps[cv.steps.length - 1] || 0));
    const shown = rungs.filter((r) => r <= maxStep);
    const shapes = shown.map((r) => ({ type: 'line', xref: 'x', yref: 'paper', x0: r, x1: r, y0: 0, y1: 1, line: { dash: 'dot', color: '#888', width: 1 } }));
    const annotations = shown.map((r) => ({ x: r, y: 1, xref: 'x', yref: 'paper', text: `rung ${r}`, showarrow: false, yanchor: 'bottom', font: { size: 10, color: '#666' } }));
    draw('plot-curves', traces, { xaxis: { title: { text: 'step' } }, yaxis: { title: { text: esc(c.metric) } }, shapes, annotations,
                                 legend: { orientation: 'h', y: -0.18 }, margin: { l: 60, r: 20, t: 24, b: 50 } });
    const running = curves.filter((cv) => cv.state === 'RUNNING').length;
    note('curves-info', `${curves.length} of ${Math.max(c.total, curves.length)} trials that reported (${running} running, in red)`);
    note('curves-note', (shown.length ? `dotted lines: the ${BODY.dataset.scheduler} rungs where trials are judged; ` : '') +
      'grey curves were stopped or paused, a marker shows the step where');
    document.getElementById('curves-more').hidden = curves.length >= c.total;
  }

  async function loadCurves() {
    const select = document.getElementById('curve-metric');
    const s = state.study;
    if (!select.options.length) {
      const names = [...new Set([...s.report_metrics, ...s.metrics])];
      for (const m of names) select.append(el('option', { value: m, text: m }));
      if (s.report_metrics.includes(s.metrics[0])) select.value = s.metrics[0];
      select.addEventListener('change', () => { state.curvesLimit = 100; safely(loadCurves); });
      document.getElementById('curves-more').addEventListener('click', () => { state.curvesLimit = Math.min(state.curvesLimit * 2, 20000); safely(loadCurves); });
    }
    const metric = select.value;
    const byNumber = new Map();
    let total = 0;
    for (let offset = 0; offset < state.curvesLimit; offset += 500) {
      const limit = Math.min(500, state.curvesLimit - offset);
      const page = await getJSON(`${api}/curves?${new URLSearchParams({ metric, offset, limit })}`);
      for (const cv of page.curves) byNumber.set(cv.number, cv);
      total = page.total;
      if (page.curves.length < limit) break;
    }
    state.curves = { metric, byNumber, total };
    drawCurves();
  }

  async function refreshTimeline() {
    state.lastTimeline = Date.now();
    const d = await getJSON(`${api}/timeline`);
    // Trials that overlapped on one node/worker go to separate lanes of it, so none hides another.
    const laneEnds = {};
    const laneOf = {};
    const fullKey = {};
    const sorted = [...d.trials].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    for (const t of sorted) {
      const key = [shortId(t.node), shortId(t.worker)].filter(Boolean).join(' / ') || 'unknown';
      fullKey[key] = [t.node, t.worker].filter(Boolean).join(' / ') || 'unknown';
      const ends = laneEnds[key] || (laneEnds[key] = []);
      let lane = ends.findIndex((end) => end <= t.start);
      if (lane < 0) { lane = ends.length; ends.push(t.end); } else ends[lane] = t.end;
      laneOf[t.number] = [key, lane];
    }
    const label = (t) => {
      const [key, lane] = laneOf[t.number];
      return esc(laneEnds[key].length > 1 ? `${key} · lane ${lane + 1}` : key);
    };
    const groups = {};
    for (const t of d.trials) (groups[t.state] = groups[t.state] || []).push(t);
    const traces = Object.entries(groups).map(([st, ts]) => ({
      type: 'bar', orientation: 'h', name: st.toLowerCase(), marker: { color: (STATE_STYLE[st] || {}).color || '#888' },
      base: ts.map((t) => t.start), x: ts.map((t) => t.duration_s * 1000),
      y: ts.map(label),
      text: ts.map((t) => esc(`trial ${t.number} on ${fullKey[laneOf[t.number][0]]}`)), hoverinfo: 'text', width: 0.6,
    }));
    const lanes = [...new Set(sorted.map(label))].sort();
    draw('plot-timeline', traces, { barmode: 'overlay', xaxis: { type: 'date', title: { text: 'time (UTC)' } },
      yaxis: { type: 'category', categoryorder: 'array', categoryarray: lanes, title: { text: 'node / worker' }, automargin: true } });
    note('timeline-note', (d.shown < d.total ? `newest ${d.shown} of ${d.total} started trials` : `${d.total} started trials`) +
      '; node and worker ids are shortened, hover a bar for the full ones');
  }

  async function fillCompare() {
    const select = document.getElementById('compare-select');
    const all = await getJSON('/api/v1/studies');
    for (const s of all) if (s.name !== name) select.append(el('option', { value: s.name, text: s.name }));
  }

  async function safely(fn) {
    try { await fn(); } catch (e) { setLive(`update failed: ${e.message}`); }
  }

  // -- live: one small request per poll, applied to what the page holds
  function applyUpdates(u) {
    renderSummary(u.summary);
    renderRunning(u.running);
    let changed = u.changed.length > 0;
    const h = state.hist;
    for (const t of [...u.changed, ...u.running]) {
      if (h && t.value !== null && t.value !== undefined) {
        const old = h.points.get(t.number);
        if (!old || old.state !== t.state || old.value !== t.value) changed = true;
        h.points.set(t.number, { state: t.state, value: t.value, step: t.last_step, live: true });
      }
    }
    const c = state.curves;
    if (c) {
      for (const p of u.points) {
        let cv = c.byNumber.get(p.number);
        if (!cv) { cv = { number: p.number, state: 'RUNNING', steps: [], values: [] }; c.byNumber.set(p.number, cv); c.total += 1; }
        p.steps.forEach((st, i) => {
          // a resumed attempt reports some steps again: the newer value replaces the older
          while (cv.steps.length && cv.steps[cv.steps.length - 1] >= st) { cv.steps.pop(); cv.values.pop(); }
          cv.steps.push(st); cv.values.push(p.values[i]);
        });
      }
      for (const t of [...u.changed, ...u.running]) {
        const cv = c.byNumber.get(t.number);
        if (cv && cv.state !== t.state) { cv.state = t.state; changed = true; }
      }
    }
    state.watch = new Set([...u.running.map((t) => t.number), ...u.waiting]);
    state.cursor = u.cursor;
    return changed || u.points.length > 0;
  }

  async function tick() {
    // a finished study is asked every tenth tick only: it changes when a study is resumed
    const idle = state.cursor && state.study && state.study.state !== 'RUNNING' && !state.watch.size;
    state.idleTicks = idle ? (state.idleTicks || 0) + 1 : 0;
    if (idle && state.idleTicks % 10) return;
    const q = new URLSearchParams();
    if (state.cursor) q.set('since', state.cursor);
    if (state.watch.size) q.set('watch', [...state.watch].join(','));
    if (state.curves) q.set('metric', state.curves.metric);
    const u = await getJSON(`${api}/updates?${q}`);
    const first = !state.cursor;
    const moved = applyUpdates(u);
    if (first) return;
    if (!moved) return;
    drawHistory();
    drawCurves();
    const now = Date.now();
    const jobs = [refreshTable()];
    if (u.changed.length || now - state.lastTimeline > 10000) jobs.push(safely(refreshTimeline));
    if (u.changed.some((t) => t.state !== 'RUNNING' && t.state !== 'WAITING') && now - state.lastParams > 10000) jobs.push(safely(refreshParams));
    if (u.changed.length && now - state.lastImportance > 30000) jobs.push(safely(refreshImportance));
    await Promise.all(jobs);
  }

  async function start() {
    // the first screen (summary cards and history) from two requests; then the rest, in page order
    await Promise.all([tick(), safely(loadHistory)]);
    state.study = Object.assign(await getJSON(api), state.study || {});
    await safely(loadCurves);
    await Promise.all([safely(refreshParams), safely(refreshImportance), safely(refreshTimeline), refreshTable(), safely(fillCompare)]);
    state.loaded = true;
  }

  wireTable();
  let started = false;
  poll(async () => {
    if (!started) { started = true; await start(); return; }
    if (state.loaded) await tick();
  }, () => true);
}

// -------------------------------------------------------------------------------------- trial

function trialPage() {
  const name = BODY.dataset.study, number = Number(BODY.dataset.trial);
  const url = `/api/v1/studies/${enc(name)}/trials/${enc(number)}`;
  let stop = null;
  async function refresh() {
    const t = await getJSON(url);
    const objective = t.metrics_names[0];
    const traces = [];
    const byKey = {};
    for (const r of t.reports) {
      for (const [m, v] of Object.entries(r.metrics)) {
        const key = `${m} (attempt ${r.attempt})`;
        // The objectives and losses show at first; other metrics (sizes, FLOPs) one click away in the legend.
        const shown = t.metrics_names.includes(m) || /loss|acc/i.test(m);
        const tr = byKey[key] || (byKey[key] = { x: [], y: [], type: 'scatter', mode: 'lines+markers', name: esc(key),
                                                 marker: { size: 4 }, visible: shown ? true : 'legendonly' });
        tr.x.push(r.step); tr.y.push(v);
      }
    }
    traces.push(...Object.values(byKey));
    if (t.best && t.best.number !== t.number && t.best.steps.length) {
      traces.push({ x: t.best.steps, y: t.best.values, type: 'scatter', mode: 'lines', name: esc(`${objective} of the best trial, #${t.best.number}`),
                    line: { color: '#222', dash: 'dash', width: 2 } });
    }
    // Metrics of very different scales share the plot; log y keeps them readable when positive.
    const allPositive = traces.filter((tr) => tr.visible !== 'legendonly').every((tr) => tr.y.every((v) => v === null || v > 0));
    draw('plot-reports', traces, { xaxis: { title: { text: 'step' } }, yaxis: { type: allPositive ? 'log' : 'linear' },
                                  legend: { orientation: 'h', y: -0.2 } });
    note('reports-note', (t.reports.length < t.n_reports ? `${t.reports.length} of ${t.n_reports} reports plotted (evenly thinned)` : `${t.n_reports} reports`) +
      (t.best && t.best.number !== t.number ? `; dashed: the study's best trial #${t.best.number} (${objective} ${fmt(t.best.value)})` : t.best ? '; this is the study\'s best trial' : ''));
    const names = [...new Set(t.reports.flatMap((r) => Object.keys(r.metrics)))];
    document.querySelector('#trial-reports thead').replaceChildren(el('tr', {}, el('th', { text: 'step' }), el('th', { text: 'attempt' }), ...names.map((n) => el('th', { text: n }))));
    document.querySelector('#trial-reports tbody').replaceChildren(...t.reports.slice(-100).reverse().map((r) =>
      el('tr', {}, el('td', { text: String(r.step) }), el('td', { text: String(r.attempt) }), ...names.map((n) => el('td', { class: 'num', text: fmt(r.metrics[n]) })))));
    const st = document.getElementById('trial-state');
    st.textContent = t.state;
    st.className = `state-${t.state}`;
    note('trial-last-step', t.last_step === null ? '–' : String(t.last_step));
    note('trial-n-reports', String(t.n_reports));
    if (t.state !== BODY.dataset.state) {
      if (stop) stop();
      window.location.reload();  // the finished trial's values, metrics and error are rendered by the server
    }
  }
  stop = poll(refresh, () => BODY.dataset.state === 'RUNNING' || BODY.dataset.state === 'WAITING');
}

// ------------------------------------------------------------------------------------ scaling

async function scalingPage() {
  const name = BODY.dataset.study;
  let d;
  try { d = await getJSON(`/api/v1/studies/${enc(name)}/scaling`); }
  catch (e) { note('scaling-status', `fit failed: ${e.message}`); return; }
  if (!d.available) { note('scaling-status', `No scaling-law fit for this study: ${d.reason}.`); return; }
  const ladder = d.source === 'ladder';
  note('scaling-status', (ladder ? `${d.fit.formula}, as the scaling ladder recorded it: fitted to its ${d.points.N.length} finished cells' tuned losses`
    : `${d.fit.formula}, fitted to ${d.fit.n_points} completed trials`) + ` (loss: ${d.loss_from})` +
    (d.fit.converged ? '' : '; the optimiser did not report convergence'));
  const table = document.getElementById('scaling-params');
  table.hidden = false;
  table.querySelector('tbody').replaceChildren(...Object.entries(d.fit.params).map(([k, v]) => {
    const iv = d.fit.intervals[k] || [null, null];
    return el('tr', { 'data-param': k }, el('th', { text: k }), el('td', { class: 'num', text: fmt(v) }),
      el('td', { class: 'num', text: `${fmt(iv[0])} – ${fmt(iv[1])}` }));
  }));
  note('scaling-details', `${d.warning ? `Caution: ${d.warning}. ` : ''}${d.fit.interval_method}. ` +
    (ladder ? 'The ladder stores no bootstrap refits, so the curves have no band; the target point shows its recorded 95% interval; '
      : 'Shaded: 95% band of the predicted loss; ') + 'right of the dotted line is extrapolation.');
  const palette = ['#4c78a8', '#f58518', '#54a24b', '#e45756'];
  const traces = [];
  d.curves.forEach((c, i) => {
    const colour = palette[i % palette.length];
    const label = `D = ${fmt(c.tokens)}`;
    traces.push({ x: c.N, y: c.high, type: 'scatter', mode: 'lines', line: { width: 0, color: colour }, showlegend: false, hoverinfo: 'skip' });
    traces.push({ x: c.N, y: c.low, type: 'scatter', mode: 'lines', line: { width: 0, color: colour }, fill: 'tonexty',
                  fillcolor: 'rgba(120,120,120,0.18)', name: `${label} band`, showlegend: false, hoverinfo: 'skip' });
    traces.push({ x: c.N, y: c.loss, type: 'scatter', mode: 'lines', line: { color: colour }, name: `fit, ${label}` });
  });
  traces.push({ x: d.points.N, y: d.points.loss, type: 'scatter', mode: 'markers', name: ladder ? 'finished cells (tuned)' : 'trials',
                marker: { size: 8, color: d.points.D.map((v) => Math.log10(v)), colorscale: 'Viridis', showscale: true,
                          colorbar: { title: { text: 'log10 D' } }, line: { width: 1, color: 'black' } } });
  const pred = d.prediction;
  if (pred && pred.loss != null) {
    const iv = pred.loss_interval || [null, null];
    const err = iv[0] != null && iv[1] != null ? { type: 'data', symmetric: false, array: [iv[1] - pred.loss], arrayminus: [pred.loss - iv[0]] } : undefined;
    traces.push({ x: [pred.N], y: [pred.loss], type: 'scatter', mode: 'markers', name: 'ladder target (predicted)',
                  marker: { size: 12, symbol: 'star', color: '#e45756' }, error_y: err });
  }
  draw('plot-scaling', traces, {
    xaxis: { type: 'log', title: { text: 'parameters N' } }, yaxis: { type: 'log', title: { text: esc(`loss (${d.loss_from})`) } },
    shapes: [{ type: 'line', xref: 'x', yref: 'paper', x0: d.observed_max_N, x1: d.observed_max_N, y0: 0, y1: 1, line: { dash: 'dot', color: '#555' } }],
    legend: { orientation: 'h', y: -0.2 },
  });
}

// ------------------------------------------------------------------------------------- pareto

async function paretoPage() {
  const name = BODY.dataset.study;
  let d;
  try { d = await getJSON(`/api/v1/studies/${enc(name)}/pareto`); }
  catch (e) { note('pareto-note', e.message); return; }
  const sx = document.getElementById('pareto-x'), sy = document.getElementById('pareto-y');
  d.metrics.forEach((m, i) => { sx.append(el('option', { value: String(i), text: m })); sy.append(el('option', { value: String(i), text: m })); });
  sy.value = '1';
  const render = () => {
    const i = Number(sx.value), j = Number(sy.value);
    const idx = d.values.map((_, k) => k);
    const front = idx.filter((k) => d.front[k]).sort((a, b) => d.values[a][i] - d.values[b][i]);
    const rest = idx.filter((k) => !d.front[k]);
    const tr = (ks, extra) => Object.assign({ x: ks.map((k) => d.values[k][i]), y: ks.map((k) => d.values[k][j]),
      text: ks.map((k) => `trial ${d.numbers[k]}`), customdata: ks.map((k) => d.numbers[k]), type: 'scatter', hoverinfo: 'text+x+y' }, extra);
    draw('plot-pareto', [
      tr(rest, { mode: 'markers', name: 'dominated', marker: { color: '#bbb', size: 6 } }),
      tr(front, { mode: d.metrics.length === 2 ? 'lines+markers' : 'markers', name: 'non-dominated', marker: { color: '#e45756', size: 9 }, line: { shape: 'hv' } }),
    ], { xaxis: { title: { text: esc(`${d.metrics[i]} (${d.directions[i]})`) } }, yaxis: { title: { text: esc(`${d.metrics[j]} (${d.directions[j]})`) } } });
    const plotDiv = document.getElementById('plot-pareto');
    if (!plotDiv.dataset.wired) {
      plotDiv.dataset.wired = '1';
      plotDiv.on('plotly_click', (ev) => {
        const n = ev.points[0] && ev.points[0].customdata;
        if (n !== undefined) window.location.href = `/studies/${enc(name)}/trials/${enc(n)}`;
      });
    }
  };
  sx.addEventListener('change', render);
  sy.addEventListener('change', render);
  render();
  const nFront = d.front.filter(Boolean).length;
  note('pareto-note', `${nFront} non-dominated of ${d.total} completed trials, over all ${d.metrics.length} objectives` +
    (d.shown < d.total ? ` (every non-dominated trial and an even spread of ${d.shown - nFront} dominated ones drawn)` : '') +
    (d.metrics.length > 2 ? '; the plot shows two of them' : ''));
  document.querySelector('#pareto-table thead').replaceChildren(el('tr', {}, el('th', { text: '#' }), ...d.metrics.map((m) => el('th', { text: m }))));
  const rows = d.values.map((_, k) => k).filter((k) => d.front[k]).sort((a, b) => d.numbers[a] - d.numbers[b]);
  document.querySelector('#pareto-table tbody').replaceChildren(...rows.map((k) => el('tr', { 'data-number': String(d.numbers[k]) },
    el('td', {}, el('a', { href: `/studies/${enc(name)}/trials/${d.numbers[k]}`, text: String(d.numbers[k]) })),
    ...d.values[k].map((v) => el('td', { class: 'num', text: fmt(v) })))));
}

// ------------------------------------------------------------------------------------ lineage

async function lineagePage() {
  const name = BODY.dataset.study;
  let d;
  try { d = await getJSON(`/api/v1/studies/${enc(name)}/lineage`); }
  catch (e) { note('lineage-note', e.message); return; }
  const numeric = [...new Set(d.members.flatMap((m) => Object.keys(m.params).filter((k) => typeof m.params[k] === 'number')))];
  const select = document.getElementById('lineage-param');
  for (const k of numeric) select.append(el('option', { value: k, text: k }));
  const byMember = {};
  d.exploits.forEach((e, i) => (byMember[e.number] = byMember[e.number] || []).push([i, e]));
  const finished = d.members.filter((m) => m.value !== null);
  const best = finished.length ? finished.reduce((a, b) => (isBetter(d.direction, b.value, a.value) ? b : a)) : null;
  // The best member's ancestry: its last exploit's parent at that moment, and so on back.
  const onPath = new Set();
  for (let m = best && best.number, bound = Infinity; m !== null && m !== undefined;) {
    const prior = (byMember[m] || []).filter(([i]) => i < bound);
    if (!prior.length) break;
    const [i, e] = prior[prior.length - 1];
    onPath.add(i); m = e.parent; bound = i;
  }
  const render = () => {
    const key = select.value;
    const segs = [];
    for (const m of d.members) {
      let start = 0;
      const evs = byMember[m.number] || [];
      let params = evs.length ? evs[0][1].params_before : m.params;
      for (const [, e] of evs) {
        segs.push({ m: m.number, x0: start, x1: e.step, params });
        start = e.parent_step; params = e.params_after;
      }
      segs.push({ m: m.number, x0: start, x1: m.last_step === null ? start : m.last_step, params });
    }
    const vals = segs.map((g) => g.params[key]).filter((v) => typeof v === 'number');
    const useLog = vals.length && vals.every((v) => v > 0);
    const tr = (v) => (useLog ? Math.log10(v) : v);
    const lo = Math.min(...vals.map(tr)), hi = Math.max(...vals.map(tr));
    const colours = ['#313695', '#4575b4', '#74add1', '#fdae61', '#f46d43', '#a50026'];
    const bands = colours.map(() => ({ x: [], y: [], text: [] }));
    for (const g of segs) {
      const v = g.params[key];
      const r = typeof v === 'number' && hi > lo ? (tr(v) - lo) / (hi - lo) : 0;
      const b = bands[Math.min(colours.length - 1, Math.floor(r * colours.length))];
      const label = esc(`member ${g.m}: ${Object.entries(g.params).map(([k, x]) => `${k}=${fmt(x)}`).join(', ')}`);
      b.x.push(g.x0, g.x1, null); b.y.push(g.m, g.m, null); b.text.push(label, label, '');
    }
    const traces = bands.map((b, k) => ({ x: b.x, y: b.y, text: b.text, type: 'scatter', mode: 'lines',
      line: { color: colours[k], width: 6 }, hoverinfo: 'text', showlegend: false })).filter((t) => t.x.length);
    const links = { x: [], y: [], text: [] }, path = { x: [], y: [], text: [] };
    d.exploits.forEach((e, i) => {
      const into = onPath.has(i) ? path : links;
      const label = esc(`member ${e.number} copied member ${e.parent} at step ${e.parent_step}`);
      into.x.push(e.parent_step, e.parent_step, null); into.y.push(e.parent, e.number, null); into.text.push(label, label, '');
    });
    traces.push({ ...links, type: 'scatter', mode: 'lines+markers', line: { color: '#888', width: 1, dash: 'dot' },
                  marker: { size: 5, color: '#888' }, hoverinfo: 'text', name: 'exploit (copy of a parent)' });
    traces.push({ ...path, type: 'scatter', mode: 'lines+markers', line: { color: '#e45756', width: 3 },
                  marker: { size: 7, color: '#e45756' }, hoverinfo: 'text', name: 'ancestry of the best member' });
    draw('plot-lineage', traces, {
      xaxis: { title: { text: 'step' } }, yaxis: { title: { text: 'member (trial number)' }, dtick: 1 },
      legend: { orientation: 'h', y: -0.15 },
    });
    note('lineage-note', `${d.exploits.length} exploits among ${d.members.length} members; segment colour: ${key}` +
      `${useLog ? ' (log scale)' : ''} from blue (low) to red (high)` + (best ? `; best member ${best.number} (${d.metric} ${fmt(best.value)})` : ''));
  };
  select.addEventListener('change', render);
  if (numeric.length) render(); else note('lineage-note', 'no numeric parameters to colour by');
  document.querySelector('#lineage-table tbody').replaceChildren(...d.exploits.map((e) => el('tr', { 'data-member': String(e.number) },
    el('td', {}, el('a', { href: `/studies/${enc(name)}/trials/${e.number}`, text: String(e.number) })),
    el('td', { class: 'num', text: String(e.step) }),
    el('td', {}, el('a', { href: `/studies/${enc(name)}/trials/${e.parent}`, text: String(e.parent) })),
    el('td', { class: 'num', text: String(e.parent_step) }),
    el('td', { text: JSON.stringify(e.params_before) }), el('td', { text: JSON.stringify(e.params_after) }),
    el('td', { text: fmtTime(e.at) }))));
}

// ------------------------------------------------------------------------------------ compare

function comparePage() {
  const names = [...document.querySelectorAll('#compare-names li')].map((li) => li.dataset.study);
  if (!names.length) { showError(document.getElementById('compare-error'), 'pick studies on the studies page'); return; }
  const palette = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2', '#ff9da6', '#9d755d'];
  poll(async () => {
    let d;
    try { d = await getJSON(`/api/v1/compare?${new URLSearchParams(names.map((n) => ['study', n]))}`); }
    catch (e) { showError(document.getElementById('compare-error'), e); throw e; }
    const traces = [];
    d.studies.forEach((h, i) => {
      const colour = palette[i % palette.length];
      traces.push({ x: h.numbers, y: h.values, type: 'scatter', mode: 'markers', marker: { color: colour, size: 4, opacity: 0.35 },
                    name: esc(`${h.study} trials`), showlegend: false });
      traces.push({ x: h.numbers, y: h.best, type: 'scatter', mode: 'lines', line: { shape: 'hv', color: colour, width: 2 },
                    name: esc(`${h.study}: ${h.metric} (${h.direction})`) });
    });
    draw('plot-compare', traces, { xaxis: { title: { text: 'trial number' } }, yaxis: { title: { text: 'objective' } }, legend: { orientation: 'h', y: -0.2 } });
  }, () => true);
}

const PAGES = { studies: studiesPage, study: studyPage, trial: trialPage, scaling: scalingPage, pareto: paretoPage,
                lineage: lineagePage, compare: comparePage };
(PAGES[BODY.dataset.page] || (() => {}))();
