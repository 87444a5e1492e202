// Dolmen web console. Plain ES2020, no dependencies: polls its own node once a second
// (each request bounded by 3 s), draws its charts on <canvas>, and never writes data
// from the node into the page as HTML (textContent only).
'use strict';
(function () {
const POLL_MS = 1000;
const TIMEOUT_MS = 3000;
const TOKEN_KEY = 'dolmen.console.token';
const PAGES = ['cluster', 'metrics', 'replication', 'data', 'node'];
const PAGE_SIZE = 50;
const COLORS = ['#2563eb', '#16a34a', '#dc2626', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563', '#65a30d', '#9333ea'];

const $ = (id) => document.getElementById(id);

const state = {
  page: 'cluster',
  info: null,
  status: null,
  cluster: null,
  series: null,
  standalone: null, // true / false once known
  inFlight: false,
  connected: null, // null until the first answer or failure
  recheck: false,
  downSince: null,
  unauthorized: false,
  lastUpdate: null,
  pollErrors: [],
  eventsSig: '',
  configLoading: false,
  browse: { query: null, pages: [], lastKeyHex: null, hasMore: false, busy: false },
  confirmAction: null,
  memToken: '',
};

// ---------------------------------------------------------------- helpers

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

const nfInt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const nfRate = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });

function isNum(v) {
  return typeof v === 'number' && isFinite(v);
}
function fmtInt(v) {
  return isNum(v) ? nfInt.format(v) : '—';
}
function fmtRate(v) {
  return isNum(v) ? nfRate.format(v) : '—';
}
function fmtMsNum(v) {
  if (!isNum(v)) return '—';
  if (v === 0) return '0.00';
  if (v >= 100) return nfInt.format(v);
  if (v >= 1) return v.toFixed(2);
  return Number(v.toPrecision(2)).toString();
}
function fmtMs(v) {
  return isNum(v) ? fmtMsNum(v) + ' ms' : '—';
}
function pad2(n) {
  return n < 10 ? '0' + n : String(n);
}
function fmtTime(ms) {
  const d = new Date(ms);
  return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
}
function fmtDuration(s) {
  if (!isNum(s)) return '—';
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return d + 'd ' + h + 'h ' + m + 'm';
  if (h) return h + 'h ' + m + 'm';
  if (m) return m + 'm ' + (s % 60) + 's';
  return s + 's';
}
function fmtBytes(n) {
  if (!isNum(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(v) : v.toFixed(1)) + ' ' + units[i];
}

function textToHex(s) {
  const bytes = new TextEncoder().encode(s);
  let h = '';
  for (let i = 0; i < bytes.length; i++) h += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16);
  return h;
}
// The user's input as hex (written in `enc`); throws on malformed hex.
function inputToHex(s, enc) {
  if (enc !== 'hex') return textToHex(s);
  let h = s.replace(/\s+/g, '').toLowerCase();
  if (h.startsWith('0x')) h = h.slice(2);
  if (h.length % 2 !== 0 || /[^0-9a-f]/.test(h)) throw new Error('not valid hex: ' + s);
  return h;
}

// ---------------------------------------------------------------- credential

function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch (e) {
    return state.memToken;
  }
}
function setToken(t) {
  state.memToken = t;
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) { /* storage unavailable: kept in memory */ }
}

// ---------------------------------------------------------------- requests

// One request with a 3 s bound. Never throws: answers
// {ok, status, data, error, code, network, timeout}.
async function api(method, path, body) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), TIMEOUT_MS);
  const headers = { Accept: 'application/json' };
  const tok = getToken();
  if (tok) headers.Authorization = 'Bearer ' + tok;
  const init = { method, headers, signal: ctrl.signal, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  try {
    const resp = await fetch(path, init);
    const text = await resp.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
    if (resp.ok) return { ok: true, status: resp.status, data };
    let error = data && typeof data.error === 'string' ? data.error : (text || resp.statusText || '');
    if (error.length > 300) error = error.slice(0, 300) + '…';
    if (!error) error = 'HTTP ' + resp.status;
    return { ok: false, status: resp.status, data, error, code: (data && data.code) || '' };
  } catch (e) {
    const timeout = !!(e && e.name === 'AbortError');
    return {
      ok: false, status: 0, data: null, network: true, timeout, code: '',
      error: timeout ? 'no answer within 3 s' : 'cannot reach the node',
    };
  } finally {
    clearTimeout(timer);
  }
}

function qs(params) {
  const parts = [];
  for (const k of Object.keys(params)) {
    const v = params[k];
    if (v === undefined || v === null) continue;
    parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(v));
  }
  return parts.join('&');
}

// ---------------------------------------------------------------- polling

async function poll() {
  if (state.inFlight) return;
  state.inFlight = true;
  try {
    const wantInfo = !state.info || state.recheck;
    const clusterParallel = state.standalone === false && !state.recheck;
    const reqs = [api('GET', '/status'), api('GET', '/console/series')];
    if (wantInfo) reqs.push(api('GET', '/console/info'));
    if (clusterParallel) reqs.push(api('GET', '/cluster/status'));
    const res = await Promise.all(reqs);
    const st = res[0], se = res[1];
    const inf = wantInfo ? res[2] : null;
    let cl = clusterParallel ? res[res.length - 1] : null;

    if (inf && inf.ok && inf.data) {
      state.info = inf.data;
      if (inf.data.mode === 'standalone') state.standalone = true;
      else if (inf.data.mode === 'replicated' && state.standalone === null) state.standalone = false;
      applyInfo();
    }
    if (st.ok && st.data) {
      state.status = st.data;
      state.standalone = !st.data.raft;
    }
    // Only ask for the cluster view once the node is known to be replicated: a standalone
    // node answers 409 there, which is no news.
    if (!clusterParallel && state.standalone === false && st.ok) {
      cl = await api('GET', '/cluster/status');
    }
    if (cl) {
      if (cl.ok && cl.data) state.cluster = cl.data;
      else if (cl.status === 409 && cl.code === 'standalone') { state.standalone = true; state.cluster = null; }
    }
    if (state.standalone) state.cluster = null;
    if (se.ok && se.data) state.series = se.data;

    const all = [st, se, inf, cl].filter(Boolean);
    const answered = all.some((r) => !r.network);
    setConnected(answered);
    if (answered) state.recheck = false;
    state.unauthorized = all.some((r) => r.status === 401);
    state.pollErrors = all
      .filter((r) => !r.ok && !r.network && r.status !== 401 && !(r.status === 409 && r.code === 'standalone'))
      .map((r) => r.error + (r.code ? ' (' + r.code + ')' : ''));
    if (answered && all.some((r) => r.ok)) state.lastUpdate = Date.now();
    render();
  } catch (e) {
    // A rendering bug must not stop the polling; the page keeps its last figures.
    console.error('dolmen console: rendering failed:', e);
  } finally {
    state.inFlight = false;
  }
}

function setConnected(up) {
  if (up) {
    state.connected = true;
    state.downSince = null;
  } else {
    if (state.connected !== false) state.downSince = Date.now();
    state.connected = false;
    // The node may come back restarted (another mode, version): ask again then.
    state.recheck = true;
  }
}

// ---------------------------------------------------------------- rendering

function render() {
  renderHeader();
  renderMessages();
  renderCluster();
  renderMetrics();
  renderReplication();
  renderNodeStatus();
}

function nodeId() {
  if (state.info && isNum(state.info.node_id)) return state.info.node_id;
  if (state.status && isNum(state.status.node_id)) return state.status.node_id;
  return null;
}

function renderHeader() {
  const id = nodeId();
  $('hdr-node').textContent = id === null ? 'node ?' : 'node ' + id;
  let mode = state.info && state.info.mode;
  if (!mode && state.standalone !== null) mode = state.standalone ? 'standalone' : 'replicated';
  $('hdr-mode').textContent = mode || '…';
  const role = ownRole();
  const hr = $('hdr-role');
  if (role) { hr.hidden = false; hr.textContent = role; } else hr.hidden = true;

  const cs = $('conn-state');
  if (state.connected === false) {
    cs.dataset.state = 'down';
    cs.textContent = 'node unreachable since ' + fmtTime(state.downSince);
  } else if (state.connected === true) {
    cs.dataset.state = 'up';
    cs.textContent = 'connected';
  } else {
    cs.dataset.state = 'connecting';
    cs.textContent = 'connecting…';
  }
  document.body.classList.toggle('stale', state.connected === false);
  $('last-update').textContent = state.lastUpdate ? 'updated ' + fmtTime(state.lastUpdate) : '';
}

function renderMessages() {
  for (const m of document.querySelectorAll('.page > .auth-msg')) m.hidden = !state.unauthorized;
  const text = state.pollErrors.length ? 'the node refused: ' + state.pollErrors.join('; ') : '';
  for (const m of document.querySelectorAll('.page > .error-msg')) {
    m.hidden = !text;
    m.textContent = text;
  }
}

function ownRole() {
  const s = state.status;
  if (!s) return null;
  if (s.raft && s.raft.role) return s.raft.role;
  if (state.standalone) return 'leader';
  return null;
}

// The member rows from /cluster/status, or from /status's members (standalone, or while
// the cluster view is not available).
function memberRows() {
  const s = state.status;
  const c = state.cluster;
  if (c && Array.isArray(c.nodes)) {
    const lll = isNum(c.leader_last_log) ? c.leader_last_log : null;
    return {
      leader: isNum(c.leader) ? c.leader : null,
      rows: c.nodes.map((n) => {
        const pos = isNum(n.last_log) ? n.last_log : (isNum(n.applied) ? n.applied : null);
        return {
          id: n.id, addr: n.client_addr, role: n.role || 'unknown', term: n.term, applied: n.applied,
          lag: lll !== null && pos !== null ? Math.max(0, lll - pos) : null,
          health: n.health || 'unknown', error: n.error || '',
        };
      }),
    };
  }
  if (s && Array.isArray(s.members)) {
    const leader = isNum(s.leader) ? s.leader : null;
    return {
      leader,
      rows: s.members.map((m) => {
        const self = m.id === s.node_id;
        return {
          id: m.id, addr: m.client_addr, role: m.role || 'unknown',
          term: self ? s.term : null,
          applied: self ? s.applied_version : null,
          lag: state.standalone && self && m.id === leader ? 0 : null,
          health: m.health || 'unknown', error: '',
        };
      }),
    };
  }
  return null;
}

function renderCluster() {
  const mr = memberRows();
  const tbody = $('members').tBodies[0];
  const self = nodeId();
  if (mr) {
    clear(tbody);
    for (const r of mr.rows) {
      const tr = document.createElement('tr');
      tr.dataset.nodeId = String(r.id);
      tr.dataset.role = r.role;
      if (r.id === self) { tr.classList.add('self'); tr.title = 'this node'; }
      tr.appendChild(el('td', null, r.id));
      tr.appendChild(el('td', 'mono', r.addr));
      tr.appendChild(el('td', 'role-' + r.role, r.role));
      tr.appendChild(el('td', 'num', fmtInt(r.term)));
      tr.appendChild(el('td', 'num', fmtInt(r.applied)));
      tr.appendChild(el('td', 'num', fmtInt(r.lag)));
      const h = el('td');
      h.appendChild(el('span', 'health health-' + r.health, r.health));
      tr.appendChild(h);
      tr.appendChild(el('td', 'err', r.error));
      tbody.appendChild(tr);
    }
    const lid = mr.leader === null ? 'none' : String(mr.leader);
    const le = $('leader');
    le.textContent = lid;
    le.dataset.leaderId = lid;
    $('sum-members').textContent = String(mr.rows.length);
  }
  const s = state.status;
  if (s) {
    $('sum-term').textContent = fmtInt(s.raft ? s.raft.term : s.term);
    $('sum-applied').textContent = fmtInt(s.applied_version);
  }
  const note = $('cluster-note');
  if (state.standalone) {
    note.hidden = false;
    note.textContent = 'This node runs standalone: it is the only member and its own leader.';
  } else if (state.status && !state.cluster) {
    note.hidden = false;
    note.textContent = 'The cluster view (/cluster/status) is not available; members as this node sees them.';
  } else note.hidden = true;
  renderEvents();
}

function renderEvents() {
  const se = state.series;
  if (!se) return;
  const evs = Array.isArray(se.events) ? se.events : [];
  const last = evs.length ? evs[evs.length - 1] : null;
  const sig = evs.length + '|' + (last ? last.t + '|' + last.kind + '|' + last.detail : '');
  if (sig === state.eventsSig) return;
  state.eventsSig = sig;
  const ul = $('events');
  clear(ul);
  for (let i = evs.length - 1; i >= 0; i--) {
    const ev = evs[i] || {};
    const li = el('li', 'ev-' + String(ev.kind || 'other').replace(/[^a-z_]/gi, ''));
    li.dataset.kind = ev.kind || '';
    li.appendChild(el('span', 'ev-time', isNum(ev.t) ? fmtTime(ev.t) : '—'));
    li.appendChild(el('span', 'ev-kind', String(ev.kind || '').replace(/_/g, ' ')));
    li.appendChild(el('span', 'ev-detail', ev.detail || ''));
    ul.appendChild(li);
  }
  $('events-empty').hidden = evs.length > 0;
}

// ---------------------------------------------------------------- charts

function niceStep(raw) {
  if (!(raw > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
}

function fmtAxis(v, step) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(a % 1e6 === 0 ? 0 : 1) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(a % 1e3 === 0 ? 0 : 1) + 'k';
  const e = Math.floor(Math.log10(step));
  const mant = step / Math.pow(10, e);
  const dec = Math.min(4, Math.max(0, -e + (Math.abs(mant - Math.round(mant)) > 1e-9 ? 1 : 0)));
  return v.toFixed(dec);
}

// Draws a line chart on `canvas`: spec = {times: [ms], series: [{name, values, color}],
// fmt: value formatter for the legend, interval: ms}. Null values are gaps.
function drawChart(canvas, spec) {
  const times = spec.times || [];
  const series = spec.series || [];
  canvas.dataset.points = String(series.length ? times.length : 0);
  const cssW = canvas.clientWidth, cssH = canvas.clientHeight;
  if (!cssW || !cssH) return; // hidden page: drawn when shown
  const dpr = window.devicePixelRatio || 1;
  const pw = Math.round(cssW * dpr), ph = Math.round(cssH * dpr);
  if (canvas.width !== pw) canvas.width = pw;
  if (canvas.height !== ph) canvas.height = ph;
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssW, cssH);
  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'middle';

  const L = 54, R = 12, T = 26, B = 22;
  const w = cssW - L - R, h = cssH - T - B;
  if (w < 20 || h < 20) return;

  let maxV = 0, any = false;
  for (const s of series) {
    for (const v of s.values) if (isNum(v)) { any = true; if (v > maxV) maxV = v; }
  }
  const step = niceStep((maxV > 0 ? maxV : 1) / 4);
  const yMax = Math.max(step, Math.ceil((maxV > 0 ? maxV : 1) / step) * step);
  const interval = spec.interval || 1000;
  let t1 = times.length ? times[times.length - 1] : Date.now();
  let t0 = times.length ? times[0] : t1 - 60000;
  if (t1 - t0 < 60000) t0 = t1 - 60000;
  const xOf = (t) => L + ((t - t0) / (t1 - t0)) * w;
  const yOf = (v) => T + h - (v / yMax) * h;

  // grid and y labels
  ctx.strokeStyle = '#e6e9ee';
  ctx.lineWidth = 1;
  ctx.fillStyle = '#667085';
  ctx.textAlign = 'right';
  for (let i = 0; i * step <= yMax * (1 + 1e-9); i++) {
    const v = i * step;
    const y = Math.round(yOf(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(L + w, y); ctx.stroke();
    ctx.fillText(fmtAxis(v, step), L - 6, y);
  }
  // time labels
  const spanS = (t1 - t0) / 1000;
  const steps = [5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600];
  let ts = steps[steps.length - 1];
  for (const s of steps) { if ((w / spanS) * s >= 75) { ts = s; break; } }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  const tsMs = ts * 1000;
  for (let t = Math.ceil(t0 / tsMs) * tsMs; t <= t1; t += tsMs) {
    const x = Math.round(xOf(t)) + 0.5;
    ctx.beginPath(); ctx.moveTo(x, T + h); ctx.lineTo(x, T + h + 4); ctx.stroke();
    if (x > L + 20 && x < L + w - 20) ctx.fillText(fmtTime(t), x, T + h + 6);
  }
  // axes
  ctx.strokeStyle = '#98a2b3';
  ctx.beginPath(); ctx.moveTo(L + 0.5, T); ctx.lineTo(L + 0.5, T + h + 0.5); ctx.lineTo(L + w, T + h + 0.5); ctx.stroke();

  // lines
  ctx.save();
  ctx.beginPath(); ctx.rect(L, T - 2, w + 2, h + 4); ctx.clip();
  ctx.lineWidth = 1.6;
  ctx.lineJoin = 'round';
  const gap = interval * 2.5;
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.fillStyle = s.color;
    ctx.beginPath();
    let run = 0, prevT = null, lastX = 0, lastY = 0;
    for (let i = 0; i < times.length; i++) {
      const v = s.values[i];
      const t = times[i];
      if (!isNum(v) || !isNum(t) || (prevT !== null && t - prevT > gap)) {
        if (run === 1) ctx.fillRect(lastX - 1.5, lastY - 1.5, 3, 3);
        run = 0;
        if (!isNum(v) || !isNum(t)) { prevT = null; continue; }
      }
      const x = xOf(t), y = yOf(v);
      if (run === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      run++; prevT = t; lastX = x; lastY = y;
    }
    if (run === 1) ctx.fillRect(lastX - 1.5, lastY - 1.5, 3, 3);
    ctx.stroke();
  }
  ctx.restore();

  // legend
  ctx.textBaseline = 'middle';
  ctx.textAlign = 'left';
  ctx.font = '12px system-ui, sans-serif';
  let lx = L;
  const fmt = spec.fmt || fmtRate;
  for (const s of series) {
    let lastV = null;
    for (let i = s.values.length - 1; i >= 0; i--) if (isNum(s.values[i])) { lastV = s.values[i]; break; }
    const label = s.name + ': ' + (lastV === null ? '—' : fmt(lastV));
    ctx.fillStyle = s.color;
    ctx.fillRect(lx, 8, 12, 3);
    ctx.fillStyle = '#344054';
    ctx.fillText(label, lx + 16, 10);
    lx += 16 + ctx.measureText(label).width + 16;
    if (lx > cssW - 60) break;
  }
  if (!series.length || !any) {
    ctx.fillStyle = '#98a2b3';
    ctx.textAlign = 'center';
    ctx.font = '13px system-ui, sans-serif';
    ctx.fillText(spec.empty || 'no data', L + w / 2, T + h / 2);
  }
}

// A chart on a hidden page only counts its points; it is drawn when its page shows.
function chartOrCount(canvas, spec, visible) {
  if (visible) drawChart(canvas, spec);
  else canvas.dataset.points = String(spec.series.length ? spec.times.length : 0);
}

function samples() {
  const se = state.series;
  return se && Array.isArray(se.samples) ? se.samples : [];
}
function pick(arr, f) {
  return arr.map((x) => { const v = x ? x[f] : null; return isNum(v) ? v : null; });
}

function renderMetrics() {
  const sm = samples();
  const times = sm.map((s) => s.t);
  const interval = (state.series && state.series.interval_ms) || 1000;
  const visible = state.page === 'metrics';
  const last = sm.length ? sm[sm.length - 1] : null;
  if (last) {
    $('now-reads').textContent = fmtRate(last.reads_per_s);
    $('now-commits').textContent = fmtRate(last.commits_per_s);
    $('now-conflicts').textContent = fmtRate(last.conflicts_per_s);
    let errs = 0;
    if (last.errors_per_s) for (const k of Object.keys(last.errors_per_s)) if (isNum(last.errors_per_s[k])) errs += last.errors_per_s[k];
    $('now-errors').textContent = fmtRate(errs);
    $('now-read-p99').textContent = fmtMs(last.read_p99_ms);
    $('now-commit-p99').textContent = fmtMs(last.commit_p99_ms);
  }
  const tp = [
    { name: 'reads/s', values: pick(sm, 'reads_per_s'), color: COLORS[0] },
    { name: 'commits/s', values: pick(sm, 'commits_per_s'), color: COLORS[1] },
    { name: 'conflicts/s', values: pick(sm, 'conflicts_per_s'), color: COLORS[3] },
  ];
  const codes = new Set();
  for (const s of sm) if (s && s.errors_per_s && typeof s.errors_per_s === 'object') for (const k of Object.keys(s.errors_per_s)) codes.add(k);
  const er = Array.from(codes).sort().map((code, i) => ({
    name: code,
    color: COLORS[(i + 2) % COLORS.length],
    values: sm.map((s) => {
      if (!s || !s.errors_per_s) return null;
      const v = s.errors_per_s[code];
      return isNum(v) ? v : 0;
    }),
  }));
  const lat = [
    { name: 'read p50', values: pick(sm, 'read_p50_ms'), color: COLORS[0] },
    { name: 'read p99', values: pick(sm, 'read_p99_ms'), color: COLORS[5] },
    { name: 'commit p50', values: pick(sm, 'commit_p50_ms'), color: COLORS[1] },
    { name: 'commit p99', values: pick(sm, 'commit_p99_ms'), color: COLORS[2] },
  ];
  const doDraw = (id, spec) => chartOrCount($(id), spec, visible);
  doDraw('chart-throughput', { times, series: tp, interval, fmt: fmtRate });
  doDraw('chart-errors', { times, series: sm.length ? er : [], interval, fmt: fmtRate, empty: 'no errors' });
  doDraw('chart-latency', { times, series: lat, interval, fmt: fmtMs, empty: 'no requests' });
}

function followerSeries(sm, field) {
  const ids = new Set();
  for (const s of sm) if (s && Array.isArray(s.followers)) for (const f of s.followers) if (f && isNum(f.id)) ids.add(f.id);
  return Array.from(ids).sort((a, b) => a - b).map((id, i) => ({
    name: 'node ' + id,
    color: COLORS[i % COLORS.length],
    values: sm.map((s) => {
      if (!s || !Array.isArray(s.followers)) return null;
      const f = s.followers.find((x) => x && x.id === id);
      return f && isNum(f[field]) ? f[field] : null;
    }),
  }));
}

function adminHref(addr) {
  let a = String(addr);
  const m = /^(0\.0\.0\.0|\[::\]|::):(\d+)$/.exec(a);
  if (m) a = (location.hostname.includes(':') ? '[' + location.hostname + ']' : location.hostname) + ':' + m[2];
  return 'http://' + a + '/#replication';
}

function renderReplication() {
  const sm = samples();
  const times = sm.map((s) => s.t);
  const interval = (state.series && state.series.interval_ms) || 1000;
  const visible = state.page === 'replication';
  const ll = followerSeries(sm, 'log_lag');
  const al = followerSeries(sm, 'apply_lag');
  const doDraw = (id, spec) => chartOrCount($(id), spec, visible);
  const emptyMsg = ownRole() === 'leader' || state.standalone === null ? 'no followers' : 'known by the leader';
  doDraw('chart-log-lag', { times, series: ll, interval, fmt: fmtInt, empty: emptyMsg });
  doDraw('chart-apply-lag', { times, series: al, interval, fmt: fmtInt, empty: emptyMsg });

  const snaps = state.series && state.series.snapshots;
  if (snaps) {
    $('snap-built').textContent = fmtInt(snaps.built);
    $('snap-sent').textContent = fmtInt(snaps.sent);
    $('snap-installed').textContent = fmtInt(snaps.installed);
  }

  const note = $('repl-note');
  const s = state.status;
  const selfP = $('repl-self');
  clear(note);
  if (state.standalone) {
    note.hidden = false;
    note.textContent = 'This node runs standalone: there is no replication.';
    selfP.textContent = '';
  } else if (s && s.raft) {
    const r = s.raft;
    selfP.textContent = 'this node: last log ' + fmtInt(r.last_log) + ', committed ' + fmtInt(r.committed) +
      ', applied ' + fmtInt(r.applied) + ' (apply lag ' + fmtInt(isNum(r.committed) && isNum(r.applied) ? Math.max(0, r.committed - r.applied) : null) +
      '), snapshot at ' + fmtInt(r.snapshot) + ', purged to ' + fmtInt(r.purged);
    if (r.role === 'leader') {
      note.hidden = true;
    } else {
      note.hidden = false;
      const leader = isNum(r.leader) ? r.leader : null;
      if (leader === null) {
        note.textContent = 'Per-follower lag is known by the leader; this node knows no leader right now.';
      } else {
        // Each member reports its own admin address in /cluster/status; the membership may not know it.
        const nodes = state.cluster && Array.isArray(state.cluster.nodes) ? state.cluster.nodes : [];
        const lm = nodes.find((n) => n.id === leader && n.admin_addr) ||
          (Array.isArray(r.members) ? r.members.find((m) => m.id === leader) : null);
        note.appendChild(document.createTextNode('Per-follower lag is known by the leader: node ' + leader));
        if (lm && lm.admin_addr) {
          note.appendChild(document.createTextNode(' (admin ' + lm.admin_addr + '). '));
          const a = el('a', null, 'Open its console');
          a.href = adminHref(lm.admin_addr);
          a.id = 'leader-console-link';
          note.appendChild(a);
          note.appendChild(document.createTextNode('.'));
        } else {
          note.appendChild(document.createTextNode('; its admin address is not known here.'));
        }
      }
    }
  } else {
    note.hidden = true;
  }
}

function renderNodeStatus() {
  const s = state.status;
  if (!s) return;
  const dl = $('node-status');
  const rows = [
    ['node id', fmtInt(s.node_id)],
    ['leader', isNum(s.leader) ? String(s.leader) : 'none'],
    ['term', fmtInt(s.term)],
    ['applied version', fmtInt(s.applied_version)],
    ['MVCC horizon', fmtInt(s.horizon)],
    ['live keys', fmtInt(s.live_keys)],
    ['size on disk', fmtBytes(s.size_bytes)],
    ['block cache', fmtBytes(s.block_cache_bytes)],
    ['memtables', fmtBytes(s.memtable_bytes)],
    ['uptime', fmtDuration(s.uptime_seconds)],
  ];
  if (s.raft) {
    rows.push(['raft role', s.raft.role || '—']);
    if (s.raft.running) rows.push(['raft stopped', s.raft.running]);
  }
  fillDl(dl, rows);
}

function fillDl(dl, rows) {
  clear(dl);
  for (const [k, v] of rows) {
    dl.appendChild(el('dt', null, k));
    dl.appendChild(el('dd', null, v));
  }
}

// ---------------------------------------------------------------- info, node page

function applyInfo() {
  const inf = state.info;
  if (!inf) return;
  const sel = $('browse-cf');
  const cur = sel.value;
  const cfs = Array.isArray(inf.column_families) && inf.column_families.length ? inf.column_families : ['default'];
  clear(sel);
  for (const cf of cfs) {
    const o = el('option', null, cf);
    o.value = cf;
    sel.appendChild(o);
  }
  if (cfs.includes(cur)) sel.value = cur;
  $('write-note').hidden = !(inf.auth && inf.auth.operator_token === false);
  fillDl($('build'), [
    ['version', inf.version || '—'],
    ['commit', inf.commit || '—'],
    ['mode', inf.mode || '—'],
    ['node id', fmtInt(inf.node_id)],
  ]);
}

async function loadConfig() {
  if (state.configLoading) return;
  state.configLoading = true;
  try {
    const box = $('config');
    const r = await api('GET', '/config');
    clear(box);
    if (r.ok && r.data && typeof r.data === 'object') {
      renderConfig(box, r.data);
    } else if (r.status === 401) {
      box.appendChild(el('p', 'auth-msg', 'credential required/incorrect: enter the admin token at the top right.'));
    } else {
      box.appendChild(el('p', 'error-msg', 'cannot load the configuration: ' + r.error));
    }
  } finally {
    state.configLoading = false;
  }
}

function cfgValue(v) {
  if (v === '***') return el('span', 'masked', '***');
  if (v === null || v === undefined) return el('span', 'muted', '—');
  return el('span', null, JSON.stringify(v));
}

function flatten(obj, prefix, out) {
  for (const k of Object.keys(obj)) {
    const v = obj[k];
    const name = prefix ? prefix + '.' + k : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, name, out);
    else out.push([name, v]);
  }
  return out;
}

function renderConfig(box, cfg) {
  const top = [];
  const sections = [];
  for (const k of Object.keys(cfg)) {
    const v = cfg[k];
    if (v && typeof v === 'object' && !Array.isArray(v)) sections.push(k);
    else top.push([k, v]);
  }
  const table = (rows) => {
    const wrap = el('div', 'table-wrap');
    const t = el('table');
    const tb = el('tbody');
    for (const [k, v] of rows) {
      const tr = el('tr');
      tr.dataset.key = k;
      tr.appendChild(el('td', null, k));
      const td = el('td');
      td.appendChild(cfgValue(v));
      tr.appendChild(td);
      tb.appendChild(tr);
    }
    t.appendChild(tb);
    wrap.appendChild(t);
    return wrap;
  };
  if (top.length) {
    const d = el('div', 'cfg-section');
    d.appendChild(table(top));
    box.appendChild(d);
  }
  for (const s of sections) {
    const d = el('div', 'cfg-section');
    d.dataset.section = s;
    d.appendChild(el('h3', null, '[' + s + ']'));
    const rows = flatten(cfg[s], '', []);
    if (rows.length) d.appendChild(table(rows));
    else d.appendChild(el('p', 'muted', '(empty)'));
    box.appendChild(d);
  }
  if (!top.length && !sections.length) box.appendChild(el('p', 'muted', '(empty configuration)'));
}

// ---------------------------------------------------------------- data page

// Bytes {text, hex} as a node: text when printable, else hex with a badge.
function bytesNode(b) {
  const span = el('span');
  if (!b) { span.textContent = '—'; return span; }
  if (typeof b.text === 'string') {
    if (b.text === '') span.appendChild(el('span', 'empty-bytes', '(empty)'));
    else span.appendChild(el('span', 'txt', b.text));
  } else {
    span.appendChild(el('span', 'hex-badge', 'hex'));
    span.appendChild(el('span', 'hexv', b.hex || ''));
  }
  return span;
}

function cf() {
  return $('browse-cf').value || 'default';
}

function updateModeGroups() {
  const mode = $('browse-mode').value;
  for (const g of document.querySelectorAll('#page-data .group')) g.classList.toggle('unused', g.dataset.mode !== mode);
}

function browseGo() {
  if (state.browse.busy) return;
  const enc = $('browse-encoding').value === 'hex' ? 'hex' : 'text';
  const mode = $('browse-mode').value === 'range' ? 'range' : 'prefix';
  const q = { cf: cf(), mode, enc };
  if (mode === 'prefix') q.prefix = $('browse-prefix').value;
  else { q.start = $('browse-start').value; q.end = $('browse-end').value; }
  state.browse.query = q;
  state.browse.pages = [null];
  browseLoad();
}

function browseUrl(q, afterHex) {
  const p = { cf: q.cf, limit: PAGE_SIZE };
  const conv = afterHex !== null; // paging: every bound in hex
  const val = (s) => (conv ? inputToHex(s, q.enc) : s);
  if (q.mode === 'prefix') { if (q.prefix) p.prefix = val(q.prefix); }
  else {
    if (q.start) p.start = val(q.start);
    if (q.end) p.end = val(q.end);
  }
  if (conv) { p.after = afterHex; p.encoding = 'hex'; } else p.encoding = q.enc;
  return '/data/range?' + qs(p);
}

async function browseLoad() {
  const b = state.browse;
  if (!b.query || b.busy) return;
  const status = $('browse-status');
  const tbody = $('browse-results').tBodies[0];
  let url;
  try {
    url = browseUrl(b.query, b.pages[b.pages.length - 1]);
  } catch (e) {
    status.textContent = String(e.message || e);
    if (b.pages.length > 1) b.pages.pop();
    return;
  }
  b.busy = true;
  status.textContent = 'loading…';
  $('browse-go').disabled = true;
  try {
    const r = await api('GET', url);
    clear(tbody);
    if (!r.ok) {
      b.hasMore = false;
      const tr = el('tr');
      const td = el('td', r.status === 401 ? 'auth-msg' : 'err', r.status === 401 ? 'credential required/incorrect: ' + r.error : 'refused: ' + r.error + (r.code ? ' (' + r.code + ')' : ''));
      td.colSpan = 3;
      tr.appendChild(td);
      tbody.appendChild(tr);
      status.textContent = '';
    } else {
      const d = r.data || {};
      const items = Array.isArray(d.items) ? d.items : [];
      for (const it of items) tbody.appendChild(resultRow(it, b.query.cf));
      b.lastKeyHex = items.length ? items[items.length - 1].key.hex : null;
      b.hasMore = !!d.has_more && items.length > 0;
      status.textContent = 'page ' + b.pages.length + ' · ' + items.length + (items.length === 1 ? ' item' : ' items') +
        ' · read at version ' + fmtInt(d.read_version) + (b.hasMore ? ' · more after' : ' · end');
      if (!items.length) {
        const tr = el('tr');
        const td = el('td', 'muted', 'no keys');
        td.colSpan = 3;
        tr.appendChild(td);
        tbody.appendChild(tr);
      }
    }
  } finally {
    b.busy = false;
    $('browse-go').disabled = false;
    $('browse-prev').disabled = b.pages.length <= 1;
    $('browse-next').disabled = !b.hasMore;
  }
}

function resultRow(it, cfName) {
  const tr = el('tr');
  const key = it.key || {};
  const val = it.value || {};
  tr.dataset.keyText = typeof key.text === 'string' ? key.text : '';
  tr.dataset.keyHex = key.hex || '';
  const tk = el('td');
  tk.appendChild(bytesNode(key));
  tr.appendChild(tk);
  const tv = el('td');
  tv.appendChild(bytesNode(val));
  if (val.truncated) {
    const a = el('a', 'show-all', '… (' + fmtInt(val.size) + ' bytes) show all');
    a.href = '#data';
    a.addEventListener('click', (ev) => {
      ev.preventDefault();
      showValue(cfName, key.hex || '');
    });
    tv.appendChild(a);
  }
  tr.appendChild(tv);
  tr.appendChild(el('td', 'num', fmtInt(val.size)));
  return tr;
}

async function showValue(cfName, keyHex) {
  const box = $('value-view');
  const body = $('value-view-body');
  const meta = $('value-view-meta');
  clear(body);
  meta.textContent = 'loading…';
  box.hidden = false;
  const r = await api('GET', '/data/key?' + qs({ cf: cfName, key: keyHex, encoding: 'hex' }));
  clear(body);
  if (!r.ok) {
    meta.textContent = '';
    body.appendChild(el('p', 'err', (r.status === 401 ? 'credential required/incorrect: ' : 'refused: ') + r.error));
    return;
  }
  const d = r.data || {};
  const k = d.key || { hex: keyHex, text: null };
  meta.textContent = '';
  meta.appendChild(document.createTextNode('key '));
  meta.appendChild(bytesNode(k));
  meta.appendChild(document.createTextNode(' · cf ' + cfName + ' · read at version ' + fmtInt(d.read_version) +
    (d.found && d.value ? ' · ' + fmtInt(d.value.size) + ' bytes' : '')));
  if (!d.found) body.appendChild(el('p', 'muted', 'not found (deleted since?)'));
  else body.appendChild(bytesNode(d.value));
}

async function getKey() {
  const out = $('get-result');
  const key = $('get-key').value;
  const enc = $('get-encoding').value === 'hex' ? 'hex' : 'text';
  out.dataset.status = 'pending';
  out.textContent = 'reading…';
  const r = await api('GET', '/data/key?' + qs({ cf: cf(), key, encoding: enc }));
  clear(out);
  if (!r.ok) {
    out.dataset.status = 'error';
    out.textContent = (r.status === 401 ? 'credential required/incorrect: ' : '') + r.error;
    return;
  }
  const d = r.data || {};
  if (!d.found) {
    out.dataset.status = 'missing';
    out.textContent = 'not found (read at version ' + fmtInt(d.read_version) + ')';
    return;
  }
  out.dataset.status = 'found';
  const dl = el('dl', 'kvlist');
  const add = (k, node) => { dl.appendChild(el('dt', null, k)); const dd = el('dd'); dd.appendChild(node); dl.appendChild(dd); };
  add('key', bytesNode(d.key));
  add('value', bytesNode(d.value));
  add('size', document.createTextNode(fmtInt(d.value && d.value.size) + ' bytes'));
  add('read version', document.createTextNode(fmtInt(d.read_version)));
  out.appendChild(dl);
}

function describe(s, enc) {
  const shown = s.length > 80 ? s.slice(0, 80) + '…' : s;
  return enc === 'hex' ? 'hex ' + shown : '"' + shown + '"';
}

function askConfirm(text, action) {
  $('confirm-text').textContent = text;
  state.confirmAction = action;
  $('confirm').hidden = false;
  $('confirm-no').focus();
}
function closeConfirm(run) {
  const action = state.confirmAction;
  state.confirmAction = null;
  $('confirm').hidden = true;
  if (run && action) action();
}

function writeRequest(kind) {
  const key = $('write-key').value;
  const value = $('write-value').value;
  const enc = $('write-encoding').value === 'hex' ? 'hex' : 'text';
  const cfName = cf();
  const out = $('write-result');
  const text = kind === 'put'
    ? 'Write key ' + describe(key, enc) + ' = ' + describe(value, enc) + ' in column family "' + cfName + '"?'
    : 'Delete key ' + describe(key, enc) + ' from column family "' + cfName + '"?';
  askConfirm(text, async () => {
    out.dataset.status = 'pending';
    out.textContent = kind === 'put' ? 'writing…' : 'deleting…';
    $('write-submit').disabled = true;
    $('delete-submit').disabled = true;
    try {
      const r = kind === 'put'
        ? await api('PUT', '/data/key', { cf: cfName, key, value, encoding: enc })
        : await api('DELETE', '/data/key?' + qs({ cf: cfName, key, encoding: enc }));
      if (r.ok) {
        const v = r.data && r.data.version;
        out.dataset.status = 'ok';
        out.textContent = (kind === 'put' ? '' : 'deleted, ') + 'written at version ' + fmtInt(v);
        if (state.browse.query && state.browse.query.cf === cfName) browseLoad();
      } else {
        out.dataset.status = 'error';
        let msg = r.error;
        if (r.status === 401) msg += ' (credential required/incorrect)';
        if (r.timeout) msg += ' (the write may or may not have happened)';
        out.textContent = msg;
      }
      out.dataset.code = r.ok ? '' : (r.code || (r.network ? 'unreachable' : ''));
    } finally {
      $('write-submit').disabled = false;
      $('delete-submit').disabled = false;
    }
  });
  out.dataset.status = 'confirm';
  out.textContent = 'waiting for confirmation…';
}

// ---------------------------------------------------------------- routing and wiring

function route() {
  let p = (location.hash || '').replace(/^#/, '');
  if (!PAGES.includes(p)) p = 'cluster';
  state.page = p;
  for (const name of PAGES) {
    $('page-' + name).hidden = name !== p;
    const tab = $('tab-' + name);
    tab.classList.toggle('active', name === p);
    tab.setAttribute('aria-selected', name === p ? 'true' : 'false');
  }
  if (p === 'node') loadConfig();
  try {
    if (p === 'metrics') renderMetrics();
    if (p === 'replication') renderReplication();
  } catch (e) { /* drawn on the next poll */ }
}

function saveToken() {
  const t = $('token-input').value.trim();
  setToken(t);
  $('token-state').textContent = t ? 'saved' : 'cleared';
  state.info = null;
  state.unauthorized = false;
  renderMessages();
  if (state.page === 'node') loadConfig();
  poll();
}

function init() {
  for (const name of PAGES) {
    $('tab-' + name).addEventListener('click', () => {
      if (location.hash !== '#' + name) location.hash = name;
      else route();
    });
  }
  window.addEventListener('hashchange', route);
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { try { renderMetrics(); renderReplication(); } catch (e) { /* next poll */ } }, 100);
  });

  $('token-input').value = getToken();
  $('token-state').textContent = getToken() ? 'set' : '';
  $('token-save').addEventListener('click', saveToken);
  $('token-input').addEventListener('keydown', (e) => { if (e.key === 'Enter') saveToken(); });

  $('browse-mode').addEventListener('change', updateModeGroups);
  updateModeGroups();
  $('browse-go').addEventListener('click', browseGo);
  for (const id of ['browse-prefix', 'browse-start', 'browse-end']) {
    $(id).addEventListener('keydown', (e) => { if (e.key === 'Enter') browseGo(); });
  }
  $('browse-next').addEventListener('click', () => {
    const b = state.browse;
    if (!b.hasMore || !b.lastKeyHex || b.busy) return;
    b.pages.push(b.lastKeyHex);
    browseLoad();
  });
  $('browse-prev').addEventListener('click', () => {
    const b = state.browse;
    if (b.pages.length <= 1 || b.busy) return;
    b.pages.pop();
    browseLoad();
  });
  $('get-go').addEventListener('click', getKey);
  $('get-key').addEventListener('keydown', (e) => { if (e.key === 'Enter') getKey(); });
  $('write-submit').addEventListener('click', () => writeRequest('put'));
  $('delete-submit').addEventListener('click', () => writeRequest('delete'));
  $('confirm-yes').addEventListener('click', () => closeConfirm(true));
  $('confirm-no').addEventListener('click', () => {
    closeConfirm(false);
    const out = $('write-result');
    out.dataset.status = 'cancelled';
    out.textContent = 'cancelled';
  });
  $('value-view-close').addEventListener('click', () => { $('value-view').hidden = true; });
  $('config-reload').addEventListener('click', loadConfig);
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    if (!$('confirm').hidden) $('confirm-no').click();
    else if (!$('value-view').hidden) $('value-view').hidden = true;
  });
  for (const id of ['confirm', 'value-view']) {
    $(id).addEventListener('click', (e) => {
      if (e.target !== e.currentTarget) return;
      if (id === 'confirm') $('confirm-no').click();
      else $('value-view').hidden = true;
    });
  }

  route();
  poll();
  setInterval(poll, POLL_MS);
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
})();
