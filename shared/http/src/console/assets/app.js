// Provisync console: one small ES module, no framework, no build step. Every figure and
// every change goes through the admin API (/admin/*) with the session cookie; changes
// carry the session's CSRF token, held in memory only. The admin token itself is sent
// once, to /console/session, and never kept. Pages are built with the DOM API (text is
// never parsed as HTML), so nothing the hub stores can run as script.

const main = document.getElementById('main');
const top = document.getElementById('top');
let session = null; // {name, csrf, ends_at}

// ---- helpers ------------------------------------------------------------------------

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session) headers['X-CSRF-Token'] = session.csrf;
  const resp = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 401 && !path.startsWith('/console/session')) {
    session = null;
    showSignIn('Your session has ended. Sign in again.');
    throw new ApiError(401, 'not signed in');
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const msg = data && data.error ? data.error : `${resp.status} ${resp.statusText}`;
    throw new ApiError(resp.status, data && data.field ? `${msg} (${data.field})` : msg);
  }
  return data;
}

const pad = (n) => String(n).padStart(2, '0');
function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function timeEl(iso) { return iso ? h('time', { datetime: iso }, when(iso)) : h('span', { class: 'muted' }, '—'); }

function notice(kind, text) { return h('div', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text); }

const STATUS_CLASS = {
  delivered: 'ok', linked: 'ok', skipped: 'off', retry: 'warn', failed: 'bad', dead: 'bad',
  refused: 'bad', queued: 'info', passed: 'ok',
};
const ADMIN_OPS = new Set(['configure', 'sign_in', 'sign_out', 'test', 'sync', 'redrive']);
function statusBadge(status, op) {
  let label = status;
  if (status === 'delivered' && ADMIN_OPS.has(op)) label = 'done';
  return h('span', { class: `badge ${STATUS_CLASS[status] || 'off'}` }, label.replace('_', ' '));
}
const opLabel = (op) => (op || '').replace(/_/g, ' ');

function table(headers, rows, opts = {}) {
  // Each cell names its column, for the stacked layout of narrow screens.
  const labels = headers.map((c) => c.label || c);
  for (const tr of rows) {
    if (tr.classList.contains('detail-row')) continue;
    [...tr.children].forEach((cell, i) => { if (labels[i]) cell.dataset.label = labels[i]; });
  }
  return h('div', { class: 'table-wrap' },
    h('table', {},
      opts.caption ? h('caption', { class: 'muted small' }, opts.caption) : null,
      h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label || c)))),
      h('tbody', {}, rows.length ? rows : [h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, opts.empty || 'Nothing yet.'))])));
}

function field(labelText, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  if (!hint) return h('div', { class: 'field' }, h('label', { for: id }, labelText), input);
  input.setAttribute('aria-describedby', `${id}-hint`);
  return h('div', { class: 'field' }, h('label', { for: id }, labelText), h('span', { class: 'hint', id: `${id}-hint` }, hint), input);
}
function checkbox(labelText, checked, name) {
  const input = h('input', { type: 'checkbox', name, checked });
  return [h('label', { class: 'check' }, input, labelText), input];
}
function select(name, options, value) {
  return h('select', { name }, options.map(([v, label]) => h('option', { value: v, selected: v === value ? 'selected' : null }, label)));
}
function busy(button, fn) {
  return async (ev) => {
    if (ev) ev.preventDefault();
    button.disabled = true;
    try { await fn(); } finally { button.disabled = false; }
  };
}
function errorInto(box, e) {
  if (e instanceof ApiError && e.status === 401) return;
  box.replaceChildren(notice('error', e.message || String(e)));
}
function hashParams() {
  const q = location.hash.split('?')[1] || '';
  return new URLSearchParams(q);
}

// ---- sign-in ------------------------------------------------------------------------

function showSignIn(message) {
  top.hidden = true;
  document.title = 'Sign in · Provisync console';
  const token = h('input', { type: 'password', name: 'token', autocomplete: 'off', required: true, spellcheck: 'false' });
  const out = h('div', { 'aria-live': 'polite' }, message ? notice('info', message) : null);
  const submit = h('button', { type: 'submit' }, 'Sign in');
  const form = h('form', { class: 'signin', novalidate: true },
    h('h1', {}, h('img', { src: '/console/assets/icon.svg', alt: '', width: 28, height: 28 }), 'Provisync console'),
    h('p', { class: 'muted' }, 'Sign in with an admin token (printed by ', h('code', {}, 'make run'), ', or made with ', h('code', {}, 'provisync token create --scope admin'), ').'),
    field('Admin token', token),
    out,
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', busy(submit, async () => {
    const value = token.value.trim();
    token.value = '';
    if (!value) { out.replaceChildren(notice('error', 'Enter an admin token.')); token.focus(); return; }
    try {
      session = await api('POST', '/console/session', { token: value });
      start();
    } catch (e) {
      out.replaceChildren(notice('error', e.message));
      token.focus();
    }
  }));
  main.replaceChildren(form);
  token.focus();
}

document.getElementById('signout').addEventListener('click', async () => {
  try { await api('DELETE', '/console/session'); } catch { /* gone already */ }
  session = null;
  location.hash = '';
  showSignIn('You are signed out.');
});

// ---- router -------------------------------------------------------------------------

const pages = {
  overview: ['Overview', overviewPage],
  activity: ['Activity', activityPage],
  targets: ['Targets', targetsPage],
  sources: ['Sources', sourcesPage],
  provision: ['Provision on demand', provisionPage],
  deadletters: ['Dead letters', deadLettersPage],
  held: ['Held changes', heldPage],
};

async function route() {
  if (!session) return;
  const path = (location.hash.replace(/^#\/?/, '').split('?')[0] || 'overview').split('/');
  const name = pages[path[0]] ? path[0] : 'overview';
  const [title, render] = pages[name];
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.page === name) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  document.title = `${title} · Provisync console`;
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const node = await render(path.slice(1));
    main.replaceChildren(node);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return;
    main.replaceChildren(h('h1', {}, title), notice('error', e.message || String(e)));
  }
  main.focus({ preventScroll: true });
}

function start() {
  top.hidden = false;
  document.getElementById('who').textContent = session.name;
  if (!location.hash) location.hash = '#/overview';
  route();
}

window.addEventListener('hashchange', route);

// ---- overview -----------------------------------------------------------------------

const OUTCOMES = ['created', 'updated', 'deactivated', 'deleted', 'failed', 'refused'];

function healthBadge(item) {
  const hl = item.health;
  if (!item.enabled) return h('span', { class: 'badge off' }, 'disabled');
  // Deprovisions the target's guard held: listed, released or discarded on #/held/{id}.
  if (hl.held > 0) return h('a', { class: 'badge warn', href: `#/held/${encodeURIComponent(item.id)}` }, `held, waiting for approval (${hl.held}${hl.held_more ? '+' : ''})`);
  if (hl.consecutive_failures > 0) return h('span', { class: 'badge bad' }, `failing (${hl.consecutive_failures})`);
  if (hl.last_success) return h('span', { class: 'badge ok' }, 'healthy');
  return h('span', { class: 'badge off' }, 'no activity');
}

function healthRows(items, linkBase) {
  return items.map((t) => {
    const hl = t.health;
    const rec = hl.last_reconcile;
    return h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: `#/${linkBase}/edit/${encodeURIComponent(t.id)}` }, t.id)),
      h('td', {}, t.kind), h('td', {}, t.mode), h('td', {}, healthBadge(t)),
      h('td', {}, timeEl(hl.last_success)),
      h('td', { class: 'reason' }, hl.last_error ? [timeEl(hl.last_error.at), h('span', { class: 'sub' }, hl.last_error.detail || '')] : h('span', { class: 'muted' }, '—')),
      h('td', { class: 'num' }, String(hl.backlog)),
      h('td', { class: 'num' }, hl.dead_letters ? h('a', { href: '#/deadletters' }, String(hl.dead_letters)) : '0'),
      h('td', { class: 'reason' }, rec ? [statusBadge(rec.status, 'reconcile'), ' ', timeEl(rec.at), h('span', { class: 'sub' }, rec.detail)] : h('span', { class: 'muted' }, '—')));
  });
}

const HEALTH_HEADERS = ['Name', 'Kind', 'Mode', 'Health', 'Last success', 'Last error',
  { label: 'Backlog', num: true }, { label: 'Dead letters', num: true }, 'Last reconcile'];

function chart(series) {
  // Drawn at the width it is shown at, so its labels stay readable on a phone.
  const W = Math.max(300, Math.min(960, main.clientWidth - 64)), H = W < 600 ? 200 : 240, L = 34, B = 26, T = 10, R = 8;
  const n = series.buckets.length;
  const totals = series.buckets.map((b) => OUTCOMES.reduce((a, k) => a + b[k], 0));
  const max = Math.max(1, ...totals);
  const step = Math.pow(10, Math.floor(Math.log10(max)));
  const ceil = Math.ceil(max / step) * step;
  const bw = (W - L - R) / n;
  const y = (v) => T + (H - T - B) * (1 - v / ceil);
  const daily = series.window === '30d';
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title' },
    s('title', { id: 'chart-title' }, `Operations per ${daily ? 'day over the last 30 days' : 'hour over the last 24 hours'}, by outcome`));
  for (const v of [0, ceil / 2, ceil]) {
    svg.append(s('line', { class: 'grid-line', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, String(Math.round(v))));
  }
  series.buckets.forEach((b, i) => {
    let acc = 0;
    const x = L + i * bw + bw * 0.15;
    const g = s('g', {});
    g.append(s('title', {}, `${when(b.start)}: ${OUTCOMES.map((k) => `${b[k]} ${k}`).join(', ')}${b.counted ? '' : ' (still counting)'}`));
    for (const k of OUTCOMES) {
      if (!b[k]) continue;
      const y0 = y(acc), y1 = y(acc + b[k]);
      g.append(s('rect', { class: `s-${k}`, x, y: y1, width: bw * 0.7, height: Math.max(1, y0 - y1) }));
      acc += b[k];
    }
    if (!b.counted) g.append(s('rect', { x, y: T, width: bw * 0.7, height: H - T - B, fill: 'none', stroke: '#9ca3af', 'stroke-dasharray': '3 3' }));
    svg.append(g);
    const d = new Date(b.start);
    const every = (daily ? 5 : 4) * (W < 600 ? 2 : 1);
    if (i % every === 0 || i === n - 1) {
      const label = daily ? `${pad(d.getMonth() + 1)}-${pad(d.getDate())}` : `${pad(d.getHours())}:00`;
      const last = i === n - 1;
      svg.append(s('text', { x: last ? W - R : x + bw * 0.35, y: H - 8, 'text-anchor': last ? 'end' : 'middle' }, label));
    }
  });
  return svg;
}

function chartTable(series) {
  const rows = series.buckets.filter((b, i) => OUTCOMES.some((k) => b[k]) || i === series.buckets.length - 1)
    .map((b) => h('tr', {}, h('th', { scope: 'row' }, when(b.start)), OUTCOMES.map((k) => h('td', { class: 'num' }, String(b[k])))));
  return h('details', {}, h('summary', {}, 'Show the numbers'),
    table(['Period starting', ...OUTCOMES.map((k) => ({ label: k, num: true }))], rows, { empty: 'No operations in this period.' }));
}

async function overviewPage() {
  const [ov, day] = await Promise.all([api('GET', '/admin/overview'), api('GET', '/admin/stats/operations?window=24h')]);
  const sum = (series, keys) => series.buckets.reduce((a, b) => a + keys.reduce((x, k) => x + b[k], 0), 0);
  const failing = ov.targets.filter((t) => t.enabled && t.health.consecutive_failures > 0).length;
  const chartSlot = h('div', {});
  const tableSlot = h('div', {});
  const buttons = {};
  let shown = null;
  const draw = () => {
    const partial = shown.buckets.some((b) => !b.counted);
    chartSlot.replaceChildren(chart(shown), partial ? notice('info', 'Some periods are still being counted: reload to see them.') : '');
  };
  const show = async (win) => {
    for (const [k, b] of Object.entries(buttons)) b.setAttribute('aria-pressed', String(k === win));
    try {
      shown = win === '24h' ? day : await api('GET', `/admin/stats/operations?window=${win}`);
      draw();
      tableSlot.replaceChildren(chartTable(shown));
    } catch (e) { errorInto(chartSlot, e); }
  };
  // Redrawn at the new width when the window changes (a phone turned sideways).
  let resizing = null;
  const onResize = () => {
    if (!chartSlot.isConnected) { window.removeEventListener('resize', onResize); return; }
    clearTimeout(resizing);
    resizing = setTimeout(() => { if (shown) draw(); }, 100);
  };
  window.addEventListener('resize', onResize);
  buttons['24h'] = h('button', { type: 'button', onclick: () => show('24h') }, '24 hours');
  buttons['30d'] = h('button', { type: 'button', onclick: () => show('30d') }, '30 days');
  const page = h('div', {},
    h('h1', {}, 'Overview'),
    h('div', { class: 'cards' },
      h('div', { class: 'card' }, h('span', { class: 'n' }, String(ov.targets.length)), h('a', { href: '#/targets' }, 'targets'), failing ? h('span', { class: 'sub badge bad' }, ` ${failing} failing`) : null),
      h('div', { class: 'card' }, h('span', { class: 'n' }, String(ov.sources.length)), h('a', { href: '#/sources' }, 'sources')),
      h('div', { class: 'card' }, h('span', { class: 'n' }, String(sum(day, ['created', 'updated', 'deactivated', 'deleted']))), 'changes delivered in 24 h'),
      h('div', { class: 'card' }, h('span', { class: 'n' }, String(sum(day, ['failed', 'refused']))), 'failed or refused in 24 h'),
      h('div', { class: 'card' }, h('span', { class: 'n' }, String(ov.dead_letters)), h('a', { href: '#/deadletters' }, 'dead letters'))),
    h('section', { class: 'chart-box', 'aria-labelledby': 'ops-h' },
      h('div', { class: 'chart-head' }, h('h2', { id: 'ops-h', style: null }, 'Operations over time'),
        h('div', { class: 'toggle', role: 'group', 'aria-label': 'Period' }, buttons['24h'], buttons['30d'])),
      chartSlot,
      h('ul', { class: 'legend', 'aria-label': 'Legend' }, OUTCOMES.map((k) => h('li', {}, h('span', { class: `swatch s-${k}`, 'aria-hidden': 'true' }), k))),
      tableSlot),
    h('h2', {}, 'Targets'),
    table(HEALTH_HEADERS, healthRows(ov.targets, 'targets'), { empty: 'No targets yet: add one under Targets.' }),
    h('h2', {}, 'Sources'),
    table(HEALTH_HEADERS, healthRows(ov.sources, 'sources'), { empty: 'No sources yet.' }));
  await show('24h');
  return page;
}

// ---- activity -----------------------------------------------------------------------

const OPS = ['create', 'update', 'password', 'deactivate', 'delete', 'add_members', 'remove_members', 'reconcile', 'pull', 'test', 'sync', 'redrive', 'configure', 'sign_in', 'sign_out'];
const STATUSES = ['delivered', 'skipped', 'retry', 'failed', 'dead', 'refused', 'linked', 'queued'];

function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
function fromLocalInput(v) { return v ? new Date(v).toISOString() : ''; }

async function activityPage() {
  const params = hashParams();
  const targets = (await api('GET', '/admin/targets')).targets.map((t) => t.id);
  const sources = (await api('GET', '/admin/sources')).sources.map((x) => x.id);
  const names = [...new Set([...targets, ...sources])].sort();
  const f = {
    target: select('target', [['', 'All'], ...names.map((n) => [n, n])], params.get('target') || ''),
    op: select('op', [['', 'All'], ...OPS.map((o) => [o, opLabel(o)])], params.get('op') || ''),
    status: select('status', [['', 'All'], ...STATUSES.map((o) => [o, o])], params.get('status') || ''),
    account: h('input', { type: 'search', name: 'account', value: params.get('account') || '', placeholder: 'userName or id' }),
    since: h('input', { type: 'datetime-local', name: 'since', value: toLocalInput(params.get('since')) }),
    until: h('input', { type: 'datetime-local', name: 'until', value: toLocalInput(params.get('until')) }),
  };
  const query = () => {
    const q = new URLSearchParams();
    for (const k of ['target', 'op', 'status', 'account']) if (f[k].value.trim()) q.set(k, f[k].value.trim());
    for (const k of ['since', 'until']) if (f[k].value) q.set(k, fromLocalInput(f[k].value));
    return q;
  };
  const apply = h('button', { type: 'submit' }, 'Apply filters');
  const csv = h('a', { class: 'button secondary', download: 'provisync-activity.csv' }, 'Export CSV');
  const out = h('div', {});
  const cursors = [null];
  let pageNo = 0;
  const load = async () => {
    const q = query();
    q.set('limit', '50');
    if (cursors[pageNo]) q.set('cursor', cursors[pageNo]);
    const csvq = query(); csvq.set('format', 'csv');
    csv.setAttribute('href', `/admin/activity?${csvq}`);
    try {
      const page = await api('GET', `/admin/activity?${q}`);
      cursors[pageNo + 1] = page.next_cursor;
      const rows = page.entries.map((e) => h('tr', {},
        h('td', {}, timeEl(e.at)),
        h('td', {}, e.resource_id ? [h('span', {}, e.resource_name || h('span', { class: 'muted' }, '(unknown)')), h('span', { class: 'sub' }, `${e.resource_type} ${e.resource_id}`)] : h('span', { class: 'muted' }, '—')),
        h('td', { class: 'nowrap' }, e.target || h('span', { class: 'muted' }, '—')),
        h('td', {}, opLabel(e.op)),
        h('td', {}, statusBadge(e.status, e.op)),
        h('td', { class: 'reason' }, e.detail || ''),
        h('td', {}, e.actor || h('span', { class: 'muted' }, 'hub'))));
      const newer = h('button', { type: 'button', class: 'secondary', disabled: pageNo === 0 ? true : null, onclick: () => { pageNo -= 1; load(); } }, '← Newer');
      const older = h('button', { type: 'button', class: 'secondary', disabled: page.next_cursor ? null : true, onclick: () => { pageNo += 1; load(); } }, 'Older →');
      out.replaceChildren(
        table(['Time', 'Account', 'Target', 'Operation', 'Status', 'Reason', 'By'], rows, { empty: 'No entries match these filters.' }),
        h('div', { class: 'pager' }, newer, h('span', { class: 'muted' }, `Page ${pageNo + 1}`), older));
    } catch (e) { errorInto(out, e); }
  };
  const form = h('form', { class: 'filters', 'aria-label': 'Filters' },
    field('Target or source', f.target), field('Operation', f.op), field('Status', f.status),
    field('Account', f.account), field('From', f.since), field('To', f.until),
    h('div', { class: 'actions' }, apply, csv));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = query().toString();
    const want = `#/activity${q ? `?${q}` : ''}`;
    if (location.hash === want) { cursors.length = 1; pageNo = 0; load(); } else location.hash = want;
  });
  await load();
  return h('div', {}, h('h1', {}, 'Activity'),
    h('p', { class: 'muted' }, 'Every operation on a target, connection test, provision on demand, redrive and change of configuration, newest first.'),
    form, out);
}

// ---- targets ------------------------------------------------------------------------

// The fields of each kind (beside the common ones), as the admin API defines them.
const KINDS = {
  scim: { label: 'SCIM 2.0 server', fields: [
    { name: 'base_url', label: 'Base URL', type: 'url', required: true, hint: 'The SCIM root, e.g. https://app.example.com/scim/v2' },
    { name: 'auth', label: 'Authentication', type: 'auth' },
    { name: 'update_style', label: 'Updates', type: 'select', options: [['patch', 'PATCH (changed attributes)'], ['put', 'PUT (whole resource)']] },
    { name: 'matching_attribute', label: 'Matching attribute', type: 'text', placeholder: 'userName', hint: 'Finds an existing account before creating one' }] },
  crowd: { label: 'Atlassian Crowd', fields: [
    { name: 'base_url', label: 'Crowd URL', type: 'url', required: true, hint: 'With its context path: https://crowd.example.com/crowd' },
    { name: 'application', label: 'Application name', type: 'text', required: true },
    { name: 'password', label: 'Application password', type: 'secret' }] },
  entra: { label: 'Microsoft Entra ID', fields: [
    { name: 'tenant_id', label: 'Tenant id', type: 'text', required: true },
    { name: 'client_id', label: 'Client id', type: 'text', required: true },
    { name: 'client_secret', label: 'Client secret', type: 'secret' },
    { name: 'graph_url', label: 'Graph URL', type: 'url', placeholder: 'https://graph.microsoft.com' },
    { name: 'login_url', label: 'Login URL', type: 'url', placeholder: 'https://login.microsoftonline.com' }] },
  salesforce: { label: 'Salesforce', fields: [
    { name: 'instance_url', label: 'My Domain URL', type: 'url', required: true },
    { name: 'login_url', label: 'Login URL', type: 'url', hint: 'Default: the My Domain URL' },
    { name: 'client_id', label: 'Consumer key', type: 'text', required: true },
    { name: 'client_secret', label: 'Consumer secret', type: 'secret' },
    { name: 'api_version', label: 'API version', type: 'text', placeholder: 'v60.0' },
    { name: 'defaults', label: 'Defaults for new users (JSON)', type: 'json', hint: '{"ProfileId": "00e…", "TimeZoneSidKey": "Europe/Paris"}' }] },
  cognito: { label: 'AWS Cognito user pool', fields: [
    { name: 'user_pool_id', label: 'User pool id', type: 'text', required: true, placeholder: 'eu-west-1_AbCdEf' },
    { name: 'region', label: 'Region', type: 'text', hint: 'Default: from the pool id' },
    { name: 'endpoint_url', label: 'Endpoint URL', type: 'url', hint: 'Only for an emulator or a VPC endpoint' },
    { name: 'email_verified', label: 'Mark delivered e-mail addresses verified', type: 'bool' }] },
  okta: { label: 'Okta', fields: [
    { name: 'base_url', label: 'Org URL', type: 'url', required: true, placeholder: 'https://dev-123456.okta.com' },
    { name: 'token', label: 'API token', type: 'secret' }] },
  webhook: { label: 'Site (signed webhooks)', fields: [
    { name: 'url', label: 'Webhook URL', type: 'url', required: true },
    { name: 'secret', label: 'Signing secret (whsec_…)', type: 'secret' },
    { name: 'entity_types', label: 'Entity types', type: 'list', hint: 'Comma-separated; empty: none' },
    { name: 'config_prefixes', label: 'Configuration prefixes', type: 'list', hint: 'Comma-separated; empty: none' },
    { name: 'user_sync', label: 'Send users and groups', type: 'bool' }] },
};
const REDACTED = '***';

function secretInput(name, isSet, editing) {
  const input = h('input', { type: 'password', name, autocomplete: 'new-password', spellcheck: 'false' });
  const state = editing ? (isSet ? 'Set. Leave empty to keep it.' : 'Not set.') : 'Write-only: never shown again.';
  return { input, hint: state, value: () => (input.value ? input.value : (editing && isSet ? REDACTED : '')) };
}

// An HTTP API's credentials: a bearer token, or a username and password (write-only).
function authField(labelText, cur, editing) {
  const basic = cur && typeof cur === 'object' && cur.basic;
  const mode = select('auth_mode', [['bearer', 'Bearer token'], ['basic', 'Username and password']], basic ? 'basic' : 'bearer');
  const bearer = secretInput('bearer', !!cur && cur.bearer === REDACTED, editing && !basic);
  const user = h('input', { type: 'text', name: 'username', value: basic ? cur.basic.username : '', autocomplete: 'off' });
  const pw = secretInput('password', !!basic && cur.basic.password === REDACTED, editing && !!basic);
  const bearerBox = field('Bearer token', bearer.input, bearer.hint);
  const basicBox = h('div', { class: 'grid' }, field('Username', user), field('Password', pw.input, pw.hint));
  const sync = () => { bearerBox.hidden = mode.value !== 'bearer'; basicBox.hidden = mode.value !== 'basic'; };
  mode.addEventListener('change', sync); sync();
  return {
    node: h('div', {}, field(labelText, mode), bearerBox, basicBox),
    value: () => (mode.value === 'bearer' ? { bearer: bearer.value() } : { basic: { username: user.value, password: pw.value() } }),
  };
}

function kindFields(kind, def, editing) {
  const getters = {};
  const nodes = [];
  for (const fd of KINDS[kind].fields) {
    const cur = def ? def[fd.name] : undefined;
    if (fd.type === 'secret') {
      const sec = secretInput(fd.name, cur === REDACTED, editing);
      nodes.push(field(fd.label, sec.input, sec.hint));
      getters[fd.name] = sec.value;
    } else if (fd.type === 'auth') {
      const auth = authField(fd.label, cur, editing);
      nodes.push(auth.node);
      getters.auth = auth.value;
    } else if (fd.type === 'select') {
      const el = select(fd.name, fd.options, cur || fd.options[0][0]);
      nodes.push(field(fd.label, el, fd.hint));
      getters[fd.name] = () => el.value;
    } else if (fd.type === 'bool') {
      const [lab, el] = checkbox(fd.label, !!cur, fd.name);
      nodes.push(h('div', { class: 'field' }, lab));
      getters[fd.name] = () => el.checked;
    } else if (fd.type === 'list') {
      const el = h('input', { type: 'text', name: fd.name, value: (cur || []).join(', ') });
      nodes.push(field(fd.label, el, fd.hint));
      getters[fd.name] = () => el.value.split(',').map((x) => x.trim()).filter(Boolean);
    } else if (fd.type === 'json') {
      const el = h('textarea', { name: fd.name }, cur && Object.keys(cur).length ? JSON.stringify(cur, null, 2) : '');
      nodes.push(field(fd.label, el, fd.hint));
      getters[fd.name] = () => { const t = el.value.trim(); if (!t) return undefined; try { return JSON.parse(t); } catch { throw new Error(`${fd.label}: not valid JSON`); } };
    } else {
      const el = h('input', { type: fd.type === 'url' ? 'url' : 'text', name: fd.name, value: cur || '', placeholder: fd.placeholder, required: fd.required });
      nodes.push(field(fd.label + (fd.required ? '' : ' (optional)'), el, fd.hint));
      getters[fd.name] = () => (el.value.trim() || undefined);
    }
  }
  return { nodes, getters };
}

function mappingEditor(rules) {
  const list = h('div', {});
  const rows = [];
  const addRow = (rule) => {
    const r = rule || {};
    const kind = r.drop ? 'drop' : (r.value !== undefined ? 'constant' : 'source');
    const target = h('input', { type: 'text', value: r.target || '', placeholder: 'title' });
    const type = select('type', [['source', 'From attribute'], ['constant', 'Constant'], ['drop', 'Drop']], kind);
    const value = h('input', { type: 'text', value: kind === 'constant' ? (typeof r.value === 'string' ? r.value : JSON.stringify(r.value)) : (r.source || '') });
    const def = h('input', { type: 'text', value: r.default === undefined ? '' : (typeof r.default === 'string' ? r.default : JSON.stringify(r.default)), placeholder: 'if missing' });
    const row = h('div', { class: 'row-form' });
    const remove = h('button', { type: 'button', class: 'secondary small', 'aria-label': 'Remove this rule' }, 'Remove');
    const sync = () => {
      value.placeholder = type.value === 'constant' ? 'value, e.g. Employee' : 'source attribute, e.g. urn:…:enterprise:2.0:User:department';
      value.disabled = type.value === 'drop'; def.disabled = type.value !== 'source';
    };
    type.addEventListener('change', sync); sync();
    row.append(field('Target attribute', target), field('Rule', type), field('Source or value', value), field('Default', def), remove);
    const entry = { row, get: () => {
      if (!target.value.trim()) return null;
      const parse = (t) => { try { return JSON.parse(t); } catch { return t; } };
      const out = { target: target.value.trim() };
      if (type.value === 'drop') out.drop = true;
      else if (type.value === 'constant') out.value = parse(value.value);
      else { if (value.value.trim()) out.source = value.value.trim(); if (def.value !== '') out.default = parse(def.value); }
      return out;
    } };
    remove.addEventListener('click', () => { rows.splice(rows.indexOf(entry), 1); row.remove(); });
    rows.push(entry); list.append(row);
  };
  (rules || []).forEach(addRow);
  const add = h('button', { type: 'button', class: 'secondary small', onclick: () => addRow() }, 'Add a rule');
  return { node: h('div', {}, list, add), get: () => rows.map((r) => r.get()).filter(Boolean) };
}

function pairsEditor(map, left, right) {
  const list = h('div', {});
  const rows = [];
  const addRow = (k, v) => {
    const a = h('input', { type: 'text', value: k || '' });
    const b = h('input', { type: 'text', value: v || '' });
    const row = h('div', { class: 'row-form pairs' });
    const remove = h('button', { type: 'button', class: 'secondary small' }, 'Remove');
    row.append(field(left, a), field(right, b), remove);
    const entry = { get: () => [a.value.trim(), b.value.trim()] };
    remove.addEventListener('click', () => { rows.splice(rows.indexOf(entry), 1); row.remove(); });
    rows.push(entry); list.append(row);
  };
  Object.entries(map || {}).forEach(([k, v]) => addRow(k, v));
  const add = h('button', { type: 'button', class: 'secondary small', onclick: () => addRow() }, 'Add a group');
  return { node: h('div', {}, list, add), get: () => Object.fromEntries(rows.map((r) => r.get()).filter(([k, v]) => k && v)) };
}

function userPicker(labelText, onPick) {
  const input = h('input', { type: 'search', autocomplete: 'off', placeholder: 'Type a userName, name or e-mail' });
  const list = h('ul', { class: 'suggest', hidden: true });
  let chosen = null;
  let timer = null;
  const search = async () => {
    const q = input.value.trim();
    chosen = null;
    if (!q) { list.hidden = true; return; }
    try {
      const found = await api('GET', `/admin/users?limit=8&q=${encodeURIComponent(q)}`);
      list.replaceChildren(...found.users.map((u) => h('li', {}, h('button', { type: 'button', onclick: () => {
        chosen = u; input.value = u.user_name; list.hidden = true; if (onPick) onPick(u);
      } }, u.user_name, u.display_name ? h('span', { class: 'muted' }, ` · ${u.display_name}`) : null))));
      if (!found.users.length) {
        list.replaceChildren(h('li', { class: 'muted small' }, found.complete
          ? 'No user matches.'
          : 'No match among the first 20,000 users searched: enter the exact user name or id.'));
      }
      list.hidden = false;
    } catch { list.hidden = true; }
  };
  input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(search, 200); });
  return { node: h('div', {}, field(labelText, input), list), value: () => (chosen ? chosen.id : input.value.trim()), input };
}

async function targetsPage(path) {
  if (path[0] === 'new') return targetForm(null);
  if (path[0] === 'edit' && path[1]) return targetForm(decodeURIComponent(path[1]));
  const { targets } = await api('GET', '/admin/targets');
  const rows = targets.map((t) => {
    const result = h('div', { 'aria-live': 'polite' });
    const test = h('button', { type: 'button', class: 'secondary small' }, 'Test connection');
    test.addEventListener('click', busy(test, () => testConnection(t.id, result)));
    return h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: `#/targets/edit/${encodeURIComponent(t.id)}` }, t.id)),
      h('td', {}, KINDS[t.kind] ? KINDS[t.kind].label : t.kind),
      h('td', {}, t.mode || 'realtime'),
      h('td', {}, t.enabled === false ? h('span', { class: 'badge off' }, 'disabled') : h('span', { class: 'badge ok' }, 'enabled')),
      h('td', {}, h('div', { class: 'actions' }, h('a', { class: 'button secondary small', href: `#/targets/edit/${encodeURIComponent(t.id)}` }, 'Edit'), test), result));
  });
  return h('div', {},
    h('h1', {}, 'Targets'),
    h('p', { class: 'muted' }, 'The systems the hub provisions users and groups to.'),
    h('div', { class: 'actions' }, h('a', { class: 'button', href: '#/targets/new' }, 'Add a target')),
    table(['Target', 'Kind', 'Mode', 'State', 'Actions'], rows, { empty: 'No targets yet.' }));
}

// `what`: 'targets' or 'sources' (a webhook source is push-only: the hub never calls it,
// and the answer says when its last signed delivery was accepted).
async function testConnection(id, out, what = 'targets') {
  out.replaceChildren(h('span', { class: 'muted' }, 'Testing…'));
  try {
    const r = await api('POST', `/admin/${what}/${encodeURIComponent(id)}/test`);
    const head = r.push_only ? 'Push-only' : (r.ok ? 'Connection works' : 'Connection failed');
    out.replaceChildren(notice(r.push_only ? 'info' : (r.ok ? 'ok' : 'error'), `${head} (${r.latency_ms} ms): ${r.detail}`));
  } catch (e) { errorInto(out, e); }
}

async function targetForm(id) {
  const editing = id !== null;
  const def = editing ? await api('GET', `/admin/targets/${encodeURIComponent(id)}`) : null;
  const idInput = h('input', { type: 'text', name: 'id', required: true, pattern: '[A-Za-z0-9._-]+', value: editing ? id : '', readonly: editing ? true : null, autocomplete: 'off' });
  const kind = select('kind', Object.entries(KINDS).map(([k, v]) => [k, v.label]), def ? def.kind : 'scim');
  if (editing) kind.disabled = true;
  const conn = h('div', {});
  let kf = null;
  const renderKind = () => { kf = kindFields(kind.value, def && def.kind === kind.value ? def : null, editing); conn.replaceChildren(...kf.nodes); };
  kind.addEventListener('change', renderKind); renderKind();

  const mode = select('mode', [['realtime', 'Real time'], ['scheduled', 'Scheduled (reconcile)'], ['manual', 'Manual (on demand)']], (def && def.mode) || 'realtime');
  const opsBoxes = ['create', 'update', 'deactivate', 'delete'].map((op) => checkbox(op, !def || (def.operations || []).includes(op), `op-${op}`));
  const oos = select('out_of_scope', [['deactivate', 'Deactivate the account'], ['delete', 'Delete the account'], ['leave', 'Leave it as it is']], (def && def.out_of_scope) || 'deactivate');
  const orphans = select('orphans', [['report', 'Report only'], ['deactivate', 'Deactivate'], ['delete', 'Delete']], (def && def.orphans) || 'report');
  const [enabledLabel, enabled] = checkbox('Enabled', !def || def.enabled !== false, 'enabled');

  const scope = h('input', { type: 'text', name: 'scope_filter', value: (def && def.scope_filter) || '', placeholder: 'e.g. active eq true and title sw "Eng"' });
  const scopeOut = h('div', { 'aria-live': 'polite' });
  const count = h('button', { type: 'button', class: 'secondary small' }, 'Count the users it selects');
  count.addEventListener('click', busy(count, async () => {
    try {
      const r = await api('POST', '/admin/preview/scope', { scope_filter: scope.value.trim() || null });
      scopeOut.replaceChildren(notice('info', `${r.selected} of ${r.total} users are in scope.`));
    } catch (e) { errorInto(scopeOut, e); }
  }));

  const mapping = mappingEditor(def && def.mapping);
  const groups = pairsEditor(def && def.group_mapping, 'Hub group (displayName)', 'Group on the target');
  const previewOut = h('div', { 'aria-live': 'polite' });
  const picker = userPicker('Preview on the user');
  const previewBtn = h('button', { type: 'button', class: 'secondary small' }, 'Preview what the target receives');
  previewBtn.addEventListener('click', busy(previewBtn, async () => {
    try {
      const r = await api('POST', '/admin/preview', { user: picker.value(), mapping: mapping.get(), group_mapping: groups.get(), scope_filter: scope.value.trim() || null });
      previewOut.replaceChildren(
        notice(r.in_scope ? 'ok' : 'info', `${r.user.user_name} is ${r.in_scope ? 'in' : 'out of'} scope.${r.in_scope ? '' : ' Nothing would be created for this user.'}`),
        h('pre', { 'aria-label': 'Payload' }, JSON.stringify(r.payload, null, 2)));
    } catch (e) { errorInto(previewOut, e); }
  }));

  const out = h('div', { 'aria-live': 'polite' });
  const save = h('button', { type: 'submit' }, editing ? 'Save changes' : 'Add target');
  const testOut = h('div', { 'aria-live': 'polite' });
  const testBtn = editing ? h('button', { type: 'button', class: 'secondary' }, 'Test connection') : null;
  if (testBtn) testBtn.addEventListener('click', busy(testBtn, () => testConnection(id, testOut)));
  const del = editing ? h('button', { type: 'button', class: 'danger' }, 'Delete target') : null;
  if (del) del.addEventListener('click', busy(del, async () => {
    if (!window.confirm(`Delete target ${id}? Nothing is removed from the target itself.`)) return;
    try { await api('DELETE', `/admin/targets/${encodeURIComponent(id)}`); location.hash = '#/targets'; } catch (e) { errorInto(out, e); }
  }));

  const form = h('form', { novalidate: true },
    h('fieldset', {}, h('legend', {}, 'Connection'),
      h('div', { class: 'grid' }, field('Id', idInput, 'Letters, digits, . _ -'), field('Kind', kind)),
      conn),
    h('fieldset', {}, h('legend', {}, 'Provisioning'),
      h('div', { class: 'grid' }, field('Mode', mode, 'Real time: every change as it happens'), field('A user leaving the scope', oos), field('Accounts the hub does not know', orphans)),
      h('div', { class: 'field', role: 'group', 'aria-label': 'Operations' }, h('span', { class: 'hint' }, 'Operations the hub may perform'), opsBoxes.map(([l]) => l)),
      h('div', { class: 'field' }, enabledLabel)),
    h('fieldset', {}, h('legend', {}, 'Scope'),
      field('Scope filter (SCIM filter on hub users)', scope, 'Empty: every user'), count, scopeOut),
    h('fieldset', {}, h('legend', {}, 'Attribute mapping'),
      h('p', { class: 'hint' }, 'Applied on top of the identity mapping (every attribute as the hub has it).'),
      mapping.node,
      h('h3', {}, 'Group mapping'), groups.node,
      h('h3', {}, 'Preview'), picker.node, h('div', { class: 'actions' }, previewBtn), previewOut),
    out,
    h('div', { class: 'actions' }, save, testBtn, del),
    testOut);
  form.addEventListener('submit', busy(save, async () => {
    let body;
    try {
      body = { kind: kind.value };
      for (const [k, get] of Object.entries(kf.getters)) { const v = get(); if (v !== undefined) body[k] = v; }
      body.mode = mode.value;
      body.operations = opsBoxes.filter(([, el]) => el.checked).map(([l]) => l.textContent);
      body.out_of_scope = oos.value;
      body.orphans = orphans.value;
      body.enabled = enabled.checked;
      if (scope.value.trim()) body.scope_filter = scope.value.trim();
      const m = mapping.get(); if (m.length) body.mapping = m;
      const g = groups.get(); if (Object.keys(g).length) body.group_mapping = g;
    } catch (e) { out.replaceChildren(notice('error', e.message)); return; }
    const tid = idInput.value.trim();
    if (!tid) { out.replaceChildren(notice('error', 'Give the target an id.')); idInput.focus(); return; }
    try {
      await api('PUT', `/admin/targets/${encodeURIComponent(tid)}`, body);
      if (editing) { out.replaceChildren(notice('ok', 'Saved.')); } else { location.hash = `#/targets/edit/${encodeURIComponent(tid)}?saved=1`; }
    } catch (e) { errorInto(out, e); }
  }));
  const saved = hashParams().get('saved');
  return h('div', {},
    h('p', {}, h('a', { href: '#/targets' }, '← Targets')),
    h('h1', {}, editing ? `Target ${id}` : 'Add a target'),
    saved ? notice('ok', 'Target added. Test its connection below.') : null,
    form);
}

// ---- sources ------------------------------------------------------------------------

async function sourcesPage(path) {
  if (path[0] === 'new') return sourceForm(null);
  if (path[0] === 'edit' && path[1]) return sourceForm(decodeURIComponent(path[1]));
  const { sources } = await api('GET', '/admin/sources');
  const rows = sources.map((x) => {
    const result = h('div', { 'aria-live': 'polite' });
    const test = h('button', { type: 'button', class: 'secondary small' }, 'Test connection');
    test.addEventListener('click', busy(test, () => testConnection(x.id, result, 'sources')));
    return h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: `#/sources/edit/${encodeURIComponent(x.id)}` }, x.id)),
      h('td', {}, x.direction || 'push'),
      h('td', {}, x.pull ? `pull: ${x.pull.kind}` : `webhooks (${x.scheme || 'standard'})`),
      h('td', {}, x.enabled === false ? h('span', { class: 'badge off' }, 'disabled') : h('span', { class: 'badge ok' }, 'enabled')),
      h('td', {}, h('div', { class: 'actions' }, h('a', { class: 'button secondary small', href: `#/sources/edit/${encodeURIComponent(x.id)}` }, 'Edit'), test), result));
  });
  return h('div', {},
    h('h1', {}, 'Sources'),
    h('p', { class: 'muted' }, 'Sites and systems that send the hub signed webhooks, or that the schedule reads.'),
    h('div', { class: 'actions' }, h('a', { class: 'button', href: '#/sources/new' }, 'Add a source')),
    table(['Source', 'Direction', 'How', 'State', 'Actions'], rows, { empty: 'No sources yet.' }));
}

async function sourceForm(id) {
  const editing = id !== null;
  const def = editing ? await api('GET', `/admin/sources/${encodeURIComponent(id)}`) : null;
  const idInput = h('input', { type: 'text', name: 'id', required: true, value: editing ? id : '', readonly: editing ? true : null, autocomplete: 'off' });
  const direction = select('direction', [['push', 'Push: the source sends webhooks'], ['pull', 'Pull: the schedule reads it'], ['bidirectional', 'Both ways']], (def && def.direction) || 'push');
  const scheme = select('scheme', [['standard', 'Standard Webhooks'], ['github', 'GitHub (X-Hub-Signature-256)']], (def && def.scheme) || 'standard');
  const stored = (def && def.secrets) || [];
  const secret = h('input', { type: 'password', name: 'secret', autocomplete: 'new-password' });
  const [rotateLabel, rotate] = checkbox('Keep the current secret too (rotation)', false, 'rotate');
  const entity = h('input', { type: 'text', value: ((def && def.entity_types) || []).join(', ') });
  const prefixes = h('input', { type: 'text', value: ((def && def.config_prefixes) || []).join(', ') });
  const allowed = h('input', { type: 'text', value: def && def.allowed_fields ? def.allowed_fields.join(', ') : '' });
  const [userSyncLabel, userSync] = checkbox('Accept users and groups', def && def.user_sync, 'user_sync');
  const [enabledLabel, enabled] = checkbox('Enabled', !def || def.enabled !== false, 'enabled');
  const pull = def && def.pull;
  const pullKind = select('pull_kind', [['scim', 'SCIM 2.0 server'], ['jsonapi', 'Drupal JSON:API']], pull ? pull.kind : 'scim');
  const pullUrl = h('input', { type: 'url', value: pull ? pull.base_url : '' });
  const pullAuth = authField('Authentication', pull && pull.auth, editing && !!pull);
  const pullBox = h('fieldset', {}, h('legend', {}, 'Reading the source'),
    h('div', { class: 'grid' }, field('API', pullKind), field('Base URL', pullUrl)), pullAuth.node);
  const syncPull = () => { pullBox.hidden = direction.value === 'push'; };
  direction.addEventListener('change', syncPull); syncPull();
  const list = (el) => el.value.split(',').map((x) => x.trim()).filter(Boolean);
  const out = h('div', { 'aria-live': 'polite' });
  const save = h('button', { type: 'submit' }, editing ? 'Save changes' : 'Add source');
  const testOut = h('div', { 'aria-live': 'polite' });
  const testBtn = editing ? h('button', { type: 'button', class: 'secondary' }, 'Test connection') : null;
  if (testBtn) testBtn.addEventListener('click', busy(testBtn, () => testConnection(id, testOut, 'sources')));
  const del = editing ? h('button', { type: 'button', class: 'danger' }, 'Delete source') : null;
  if (del) del.addEventListener('click', busy(del, async () => {
    if (!window.confirm(`Delete source ${id}? Its webhooks are refused from then on.`)) return;
    try { await api('DELETE', `/admin/sources/${encodeURIComponent(id)}`); location.hash = '#/sources'; } catch (e) { errorInto(out, e); }
  }));
  const form = h('form', { novalidate: true },
    h('fieldset', {}, h('legend', {}, 'Source'),
      h('div', { class: 'grid' }, field('Id', idInput, 'Appears in its webhook URL: /webhooks/{id}'), field('Direction', direction), field('Signature scheme', scheme)),
      field('Signing secret', secret, stored.length ? `${stored.length} set. Leave empty to keep.` : 'Not set. Write-only: never shown again.'),
      stored.length ? h('div', { class: 'field' }, rotateLabel) : null),
    h('fieldset', {}, h('legend', {}, 'What it may change'),
      h('div', { class: 'field' }, userSyncLabel),
      h('div', { class: 'grid' }, field('Entity types', entity, 'Comma-separated; empty: none'), field('Configuration prefixes', prefixes, 'Comma-separated; empty: none'), field('Allowed user fields', allowed, 'Empty: the default set (never roles, active or password)')),
      h('div', { class: 'field' }, enabledLabel)),
    pullBox, out, h('div', { class: 'actions' }, save, testBtn, del), testOut);
  form.addEventListener('submit', busy(save, async () => {
    const sid = idInput.value.trim();
    if (!sid) { out.replaceChildren(notice('error', 'Give the source an id.')); return; }
    const body = { direction: direction.value, scheme: scheme.value, user_sync: userSync.checked, enabled: enabled.checked,
      entity_types: list(entity), config_prefixes: list(prefixes) };
    if (list(allowed).length) body.allowed_fields = list(allowed);
    const kept = stored.map(() => REDACTED);
    if (secret.value) body.secrets = rotate.checked ? [...kept, secret.value] : [secret.value];
    else if (kept.length) body.secrets = kept;
    if (direction.value !== 'push') body.pull = { kind: pullKind.value, base_url: pullUrl.value.trim(), auth: pullAuth.value() };
    try {
      await api('PUT', `/admin/sources/${encodeURIComponent(sid)}`, body);
      if (editing) out.replaceChildren(notice('ok', 'Saved.')); else location.hash = `#/sources/edit/${encodeURIComponent(sid)}`;
    } catch (e) { errorInto(out, e); }
  }));
  return h('div', {}, h('p', {}, h('a', { href: '#/sources' }, '← Sources')), h('h1', {}, editing ? `Source ${id}` : 'Add a source'), form);
}

// ---- provision on demand ------------------------------------------------------------

const STEP_TITLES = {
  scope: 'Determine if the user is in scope',
  match: 'Match the user between the hub and the target',
  attributes: 'Compare the attributes',
  send: 'Perform the action',
};

function valueText(v) { return v === null || v === undefined ? '—' : (typeof v === 'string' ? v : JSON.stringify(v)); }

function provisionResult(r) {
  const steps = r.steps.map((st, i) => h('li', { class: st.state },
    h('h3', {}, `${i + 1}. ${STEP_TITLES[st.step] || st.step}`, statusBadge(st.state)),
    h('p', {}, st.detail)));
  const changes = r.changes.map((c) => h('tr', {}, h('th', { scope: 'row', class: 'mono' }, c.attribute), h('td', { class: 'mono' }, valueText(c.before)), h('td', { class: 'mono' }, valueText(c.after))));
  return h('section', { 'aria-labelledby': 'result-h' },
    h('h2', { id: 'result-h' }, `${r.user.user_name} → ${r.target}`),
    h('ol', { class: 'steps' }, steps),
    r.outcome ? h('p', {}, 'Answer: ', statusBadge(r.outcome.status), ` ${opLabel(r.outcome.op)}`, r.outcome.detail ? ` — ${r.outcome.detail}` : '', r.target_id ? h('span', { class: 'muted' }, ` (account on the target: ${r.target_id})`) : '') : null,
    h('h3', {}, 'Attributes that changed'),
    table(['Attribute', 'Before', 'After'], changes, { empty: 'None.' }),
    h('details', { open: true }, h('summary', {}, 'What the target receives'), h('pre', {}, JSON.stringify(r.payload, null, 2))),
    h('p', {}, h('a', { href: `#/activity?account=${encodeURIComponent(r.user.id)}` }, `See ${r.user.user_name} in Activity`)));
}

async function provisionPage() {
  const { targets } = await api('GET', '/admin/targets');
  const enabledTargets = targets.filter((t) => t.enabled !== false);
  const target = select('target', enabledTargets.map((t) => [t.id, `${t.id} (${t.kind})`]), hashParams().get('target') || (enabledTargets[0] && enabledTargets[0].id));
  const picker = userPicker('User');
  const out = h('div', { 'aria-live': 'polite' });
  const go = h('button', { type: 'submit' }, 'Provision');
  const form = h('form', { class: 'grid' }, field('Target', target), picker.node, h('div', { class: 'actions' }, go));
  form.addEventListener('submit', busy(go, async () => {
    if (!picker.value()) { out.replaceChildren(notice('error', 'Choose a user.')); return; }
    out.replaceChildren(h('p', { class: 'muted' }, 'Provisioning…'));
    try { out.replaceChildren(provisionResult(await api('POST', '/admin/provision', { target: target.value, user: picker.value() }))); } catch (e) { errorInto(out, e); }
  }));
  return h('div', {}, h('h1', {}, 'Provision on demand'),
    h('p', { class: 'muted' }, 'Provision one user to one target now, and see each step: scope, matching, the attributes that change, and the target\u2019s answer.'),
    enabledTargets.length ? form : notice('info', 'There is no enabled target.'), out);
}

// ---- dead letters -------------------------------------------------------------------

async function deadLettersPage() {
  const data = await api('GET', '/admin/deadletters?limit=100');
  const out = h('div', { 'aria-live': 'polite' });
  const rows = data.dead_letters.map((d) => {
    const b = d.body && typeof d.body === 'object' ? d.body : {};
    const name = b.resource && b.resource.userName ? b.resource.userName : (b.resource && b.resource.displayName) || '';
    const detail = h('tr', { class: 'detail-row', hidden: true }, h('td', { colspan: 5 }, h('pre', {}, JSON.stringify(d.body, null, 2))));
    const inspect = h('button', { type: 'button', class: 'secondary small', 'aria-expanded': 'false' }, 'Inspect');
    inspect.addEventListener('click', () => { detail.hidden = !detail.hidden; inspect.setAttribute('aria-expanded', String(!detail.hidden)); });
    const redrive = h('button', { type: 'button', class: 'small' }, 'Redrive');
    redrive.addEventListener('click', busy(redrive, async () => {
      try {
        await api('POST', '/admin/deadletters/redrive-one', { dedup_id: d.dedup_id });
        out.replaceChildren(notice('ok', `Sent ${name || d.dedup_id} back to the queue.`));
        row.remove();
        detail.remove();
      } catch (e) { errorInto(out, e); }
    }));
    const row = h('tr', {},
      h('td', {}, name || h('span', { class: 'muted' }, '—'), h('span', { class: 'sub' }, `${b.resource_type || ''} ${b.resource_id || d.group_id}`)),
      h('td', {}, b.op || '—'),
      h('td', {}, timeEl(b.occurred_at)),
      h('td', { class: 'num' }, String(d.receive_count)),
      h('td', {}, h('div', { class: 'actions' }, inspect, redrive)));
    return [row, detail];
  });
  const all = h('button', { type: 'button' }, 'Redrive all');
  all.addEventListener('click', busy(all, async () => {
    if (!window.confirm('Send every dead letter back to the queue?')) return;
    try { const r = await api('POST', '/admin/deadletters/redrive'); out.replaceChildren(notice('ok', `${r.redriven} sent back to the queue.`)); setTimeout(route, 800); } catch (e) { errorInto(out, e); }
  }));
  return h('div', {}, h('h1', {}, 'Dead letters'),
    h('p', { class: 'muted' }, `${data.count} change(s) given up on after every retry. Inspect one (passwords and secrets are never shown), fix the cause, then send it back to the queue.`),
    data.count ? h('div', { class: 'actions' }, all) : null, out,
    table(['Account', 'Change', 'Happened', { label: 'Receives', num: true }, 'Actions'], rows.flat(), { empty: 'No dead letters.' }));
}

// ---- held changes -------------------------------------------------------------------

// What one release answered ({released, superseded, failed, left}), in words.
function releaseSummary(r) {
  const parts = [`${r.released.length} sent (their outcomes are in Activity)`];
  if (r.superseded.length) parts.push(`${r.superseded.length} not sent: the hub changed the account since`);
  if (r.failed.length) parts.push(`${r.failed.length} still held, not sent now (${r.failed[0].reason})`);
  if (r.left) parts.push(`${r.left} still held, not tried yet`);
  return parts.join('; ') + '.';
}

// What the last "Release all" or "Discard all" did, shown above the list read after it.
let heldFlash = null;

// Deprovisions a target's deprovision guard held (GET /admin/targets/{id}/held), oldest
// first: each sent past the guard on release, or dropped on discard, both audited with
// who did it. One release request sends for at most 20 s and says how many it left:
// "Release all" asks again until none are left or a round sends none.
async function heldPage(path) {
  const id = path[0] ? decodeURIComponent(path[0]) : '';
  if (!id) return h('div', {}, h('h1', {}, 'Held changes'), notice('info', 'Open a target\'s held changes from its badge on the overview.'));
  const base = `/admin/targets/${encodeURIComponent(id)}/held`;
  const data = await api('GET', base);
  const out = h('div', { 'aria-live': 'polite' }, heldFlash);
  heldFlash = null;
  const name = (c) => c.account.userName || c.account.id;
  const what = (c) => `${opLabel(c.change)}${c.count > 1 ? ` (${c.count})` : ''}`;
  const rows = data.held.map((c) => {
    const release = h('button', { type: 'button', class: 'small' }, 'Release');
    const discard = h('button', { type: 'button', class: 'secondary small' }, 'Discard');
    const row = h('tr', {},
      h('td', {}, name(c), h('span', { class: 'sub' }, `${c.resource_type} ${c.account.id}`)),
      h('td', {}, what(c)),
      h('td', { class: 'reason' }, c.cause || '—'),
      h('td', {}, timeEl(c.at)),
      h('td', {}, h('div', { class: 'actions' }, release, discard)));
    release.addEventListener('click', busy(release, async () => {
      if (!window.confirm(`Send the held ${what(c)} of ${name(c)} to ${id}?`)) return;
      try {
        const r = await api('POST', `${base}/release`, { ids: [c.id] });
        const none = !(r.released.length + r.superseded.length + r.failed.length + r.left);
        out.replaceChildren(none ? notice('info', `${name(c)}: no longer held (released or discarded meanwhile); nothing sent.`)
          : notice(r.failed.length ? 'error' : 'ok', `${name(c)}: ${releaseSummary(r)}`));
        if (!r.failed.length && !r.left) row.remove();
      } catch (e) { errorInto(out, e); }
    }));
    discard.addEventListener('click', busy(discard, async () => {
      if (!window.confirm(`Discard the held ${what(c)} of ${name(c)}? It will not be sent to ${id}.`)) return;
      try {
        const r = await api('POST', `${base}/discard`, { ids: [c.id] });
        out.replaceChildren(r.discarded.length ? notice('ok', `${name(c)}: discarded, not sent.`)
          : notice('info', `${name(c)}: no longer held (released or discarded meanwhile).`));
        row.remove();
      } catch (e) { errorInto(out, e); }
    }));
    return row;
  });
  const all = h('button', { type: 'button' }, 'Release all');
  all.addEventListener('click', busy(all, async () => {
    if (!window.confirm(`Send every held change to ${id}, past its deprovision guard?`)) return;
    const total = { released: [], superseded: [], failed: [], left: 0 };
    try {
      for (;;) {
        const r = await api('POST', `${base}/release`);
        total.released.push(...r.released);
        total.superseded.push(...r.superseded);
        total.failed = r.failed;
        total.left = r.left;
        out.replaceChildren(notice('info', `Releasing… ${releaseSummary(total)}`));
        if (!r.left || !(r.released.length + r.superseded.length)) break;
      }
      heldFlash = notice(total.failed.length || total.left ? 'error' : 'ok', releaseSummary(total));
      route();
    } catch (e) { errorInto(out, e); }
  }));
  const discardAll = h('button', { type: 'button', class: 'secondary' }, 'Discard all');
  discardAll.addEventListener('click', busy(discardAll, async () => {
    if (!window.confirm(`Discard every held change? None of them will be sent to ${id}.`)) return;
    try {
      const r = await api('POST', `${base}/discard`);
      heldFlash = notice('ok', `${r.discarded.length} discarded, not sent.`);
      route();
    } catch (e) { errorInto(out, e); }
  }));
  const count = data.more ? `More than ${data.held.length}` : String(data.held.length);
  const intro = data.held.length
    ? `${count} deprovision(s) held: more came at once than ${id}'s deprovision guard allows. Check the cause first (a scope or an identity provider gone wrong), then release them to send them, or discard them.`
    : `Nothing is held for ${id}: its deprovisions are within what its deprovision guard allows.`;
  return h('div', {}, h('p', {}, h('a', { href: '#/overview' }, '← Overview')),
    h('h1', {}, `Held changes for ${id}`),
    h('p', { class: 'muted' }, intro),
    data.held.length ? h('div', { class: 'actions' }, all, discardAll) : null, out,
    table(['Account', 'Change', 'Why it was to be sent', 'Held', 'Actions'], rows, { empty: 'Nothing is held.' }));
}

// ---- start --------------------------------------------------------------------------

(async () => {
  try {
    session = await api('GET', '/console/session');
  } catch { session = null; }
  if (session) start(); else showSignIn();
})();
