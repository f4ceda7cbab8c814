// kfbridge UI: a small hash-routed app (#/runs, #/submit, #/runs/<id>?step=<step>). Hash routing
// keeps every request path relative to the page, so the app works under any proxy prefix.

import { getJSON, postJSON, session, login, el, fmtDuration, fmtTime, fmtBytes, terminal, ApiError, fetchLog } from './api.js';
import { Follower } from './follow.js';
import { LogView } from './logview.js';
import { renderDag } from './dag.js';

const main = document.getElementById('main');
let cleanup = null;

function badge(status) { return el('span', { class: `badge st-${status || 'pending'}`, 'data-status': status || 'pending' }, status || 'pending'); }

function errorBox(e) {
  const box = el('div', { class: 'error-box', role: 'alert' }, e.message || String(e));
  const issues = e.problem && e.problem.issues;
  if (issues && issues.length) box.append(el('ul', {}, issues.map((i) => el('li', {}, i.message || JSON.stringify(i)))));
  return box;
}

/** safeURL accepts link targets that cannot run script (no javascript:, data:, …). */
function safeURL(u) {
  if (!u) return false;
  try { return ['http:', 'https:', 's3:', 'file:'].includes(new URL(u, document.baseURI).protocol); } catch { return false; }
}

/** rank orders statuses by progress: pending < running < any final status. */
function rank(status) { return terminal(status) ? 2 : status === 'running' ? 1 : 0; }

function duration(r) {
  if (!r.started_at) return '';
  const end = r.finished_at ? new Date(r.finished_at) : new Date();
  return fmtDuration(end - new Date(r.started_at));
}

/** every calls fn now and then every ms until the returned stop is called. */
function every(ms, fn) {
  let stopped = false;
  let t = 0;
  const loop = async () => {
    if (stopped) return;
    try { await fn(); } catch (e) { console.warn(e); }
    if (!stopped) t = setTimeout(loop, ms);
  };
  loop();
  return () => { stopped = true; clearTimeout(t); };
}

// ---------------------------------------------------------------- runs list

function runsPage() {
  const body = el('tbody');
  const table = el('table', { class: 'runs' },
    el('thead', {}, el('tr', {}, ['Run', 'Status', 'Runtime', 'Started', 'Duration', 'Steps', ''].map((h) => el('th', {}, h)))), body);
  const err = el('div');
  main.replaceChildren(el('h1', {}, 'Runs'), err, table);
  const draw = (runs) => {
    runs.sort((a, b) => (b.created_at || '').localeCompare(a.created_at || ''));
    if (!runs.length) { body.replaceChildren(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'No runs yet. ', el('a', { href: '#/submit' }, 'Submit one.')))); return; }
    body.replaceChildren(...runs.map((r) => {
      const steps = r.steps || [];
      const ok = steps.filter((s) => s.status === 'succeeded').length;
      const cancel = terminal(r.status) ? '' : el('button', {
        type: 'button', class: 'danger cancel', onclick: async (e) => {
          e.target.disabled = true;
          try { await postJSON(`api/v1/runs/${encodeURIComponent(r.id)}:cancel`, undefined); } catch (x) { err.replaceChildren(errorBox(x)); }
        },
      }, 'Cancel');
      return el('tr', { 'data-run': r.id },
        el('td', { class: 'name' }, el('a', { href: `#/runs/${encodeURIComponent(r.id)}` }, r.name || r.id), el('div', { class: 'muted' }, r.id)),
        el('td', {}, badge(r.status)),
        el('td', {}, r.runtime || ''),
        el('td', {}, fmtTime(r.started_at || r.created_at)),
        el('td', {}, duration(r)),
        el('td', {}, `${ok}/${steps.length}`),
        el('td', {}, cancel));
    }));
  };
  return every(2000, async () => {
    try { draw((await getJSON('api/v1/runs')).runs || []); err.replaceChildren(); } catch (e) { err.replaceChildren(errorBox(e)); }
  });
}

// ---------------------------------------------------------------- submit

function submitPage() {
  let dir = '';
  let selected = null;
  const list = el('ul');
  const crumb = el('div', { class: 'crumb' });
  const files = el('div', { class: 'files', id: 'files' }, crumb, list);
  const chosen = el('div', { class: 'muted', id: 'chosen' }, 'Pick a .pipeline, notebook or script.');
  const runtime = el('select', { id: 'runtime', name: 'runtime' });
  const name = el('input', { id: 'run-name', placeholder: '(pipeline name)' });
  const params = el('div', { class: 'params' });
  const addParam = () => params.append(el('div', { class: 'param' },
    el('input', { placeholder: 'name', class: 'pname' }), el('input', { placeholder: 'value', class: 'pvalue' }),
    el('button', { type: 'button', onclick: (e) => e.target.parentElement.remove() }, '×')));
  const submit = el('button', { type: 'submit', class: 'primary', id: 'submit', disabled: true }, 'Submit');
  const out = el('div', { id: 'submit-result' });
  const form = el('form', { class: 'card' },
    chosen,
    el('div', { class: 'form-row' }, el('label', { for: 'runtime' }, 'Runtime'), runtime),
    el('div', { class: 'form-row' }, el('label', { for: 'run-name' }, 'Run name'), name),
    el('div', {}, el('label', { class: 'muted' }, 'Parameters'), params,
      el('button', { type: 'button', onclick: addParam }, '+ parameter')),
    el('div', { class: 'form-row' }, submit), out);
  main.replaceChildren(el('h1', {}, 'Submit a pipeline'), el('div', { class: 'submit-grid' }, files, form));

  let runtimesAPI = false;
  // Runtime configurations in Elyra's shape ({"runtimes": [{name, display_name, …}]}); the local
  // runtime is always there. Servers without the endpoint run everything locally.
  getJSON('api/v1/runtimes').then((r) => {
    const items = (Array.isArray(r) ? r : (r.runtimes || [])).map((x) => (typeof x === 'string' ? { name: x } : x)).filter((x) => x && x.name);
    if (!items.some((x) => x.name === 'local')) items.unshift({ name: 'local', display_name: 'local' });
    runtimesAPI = true;
    runtime.replaceChildren(...items.map((x) => el('option', { value: x.name }, x.display_name && x.display_name !== x.name ? `${x.display_name} (${x.name})` : x.name)));
  }).catch(() => { runtime.replaceChildren(el('option', { value: 'local' }, 'local')); });

  const load = async () => {
    try {
      const l = await getJSON(`api/v1/files?dir=${encodeURIComponent(dir)}`);
      const parts = l.dir ? l.dir.split('/') : [];
      crumb.replaceChildren(el('a', { href: '#/submit', onclick: (e) => { e.preventDefault(); dir = ''; load(); } }, 'workspace'),
        ...parts.flatMap((p, i) => [' / ', el('a', { href: '#/submit', onclick: (e) => { e.preventDefault(); dir = parts.slice(0, i + 1).join('/'); load(); } }, p)]));
      const items = [];
      if (l.parent != null) items.push(el('li', {}, el('button', { type: 'button', onclick: () => { dir = l.parent; load(); } }, el('span', { class: 'ficon k-dir', 'aria-hidden': 'true' }), '..')));
      for (const f of l.entries) {
        const b = el('button', { type: 'button', 'data-path': f.path, class: selected === f.path ? 'selected' : '' },
          el('span', { class: `ficon k-${f.type === 'dir' ? 'dir' : f.kind}`, 'aria-hidden': 'true' }), f.name,
          el('span', { class: 'kind' }, f.type === 'dir' ? '' : `${f.kind} · ${fmtBytes(f.size)}`));
        b.addEventListener('click', () => {
          if (f.type === 'dir') { dir = f.path; load(); return; }
          selected = f.path;
          list.querySelectorAll('button.selected').forEach((x) => x.classList.remove('selected'));
          b.classList.add('selected');
          chosen.replaceChildren('Selected: ', el('strong', {}, f.path));
          submit.disabled = false;
          out.replaceChildren();
          if (f.kind === 'pipeline') validate(f.path);
        });
        items.push(el('li', {}, b));
      }
      if (!l.entries.length) items.push(el('li', { class: 'muted' }, '(no pipelines, notebooks or scripts here)'));
      list.replaceChildren(...items);
    } catch (e) { list.replaceChildren(el('li', {}, errorBox(e))); }
  };
  load();

  // Check a pipeline as soon as it is picked, so problems show before submitting.
  const validate = async (path) => {
    try {
      const r = await postJSON('api/v1/pipelines/validate', { path });
      if (selected !== path) return;
      const issues = r.issues || [];
      if (!issues.length) { out.replaceChildren(el('div', { class: 'muted', id: 'validation' }, '✓ pipeline is valid')); return; }
      out.replaceChildren(el('div', { class: issues.some((i) => i.severity === 1) ? 'error-box' : 'card', id: 'validation' },
        el('ul', {}, issues.map((i) => el('li', {}, `${i.severity === 1 ? 'error' : 'warning'}: ${i.message}`)))));
    } catch { /* servers without the endpoint: submit reports problems */ }
  };

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!selected) return;
    const body = { path: selected };
    if (name.value.trim()) body.name = name.value.trim();
    const p = {};
    for (const row of params.querySelectorAll('.param')) {
      const k = row.querySelector('.pname').value.trim();
      if (!k) continue;
      const v = row.querySelector('.pvalue').value;
      try { p[k] = JSON.parse(v); } catch { p[k] = v; }
    }
    if (Object.keys(p).length) body.parameters = p;
    if (runtimesAPI && runtime.value !== 'local') body.runtime = runtime.value;
    submit.disabled = true;
    out.replaceChildren(el('div', { class: 'muted' }, 'Submitting…'));
    try {
      const run = await postJSON('api/v1/runs', body);
      location.hash = `#/runs/${encodeURIComponent(run.id)}`;
    } catch (x) {
      out.replaceChildren(errorBox(x));
      submit.disabled = false;
    }
  });
  return null;
}

// ---------------------------------------------------------------- run page

function runPage(id, step) {
  let run = null;
  let selected = step || null;
  const head = el('div', { class: 'run-head' });
  const progress = el('div', { class: 'card', id: 'progress', hidden: true });
  const dagHost = el('div', { class: 'dag-host', id: 'dag' });
  const tabs = el('div', { class: 'step-tabs', id: 'step-tabs' });
  const logHost = el('div', { class: 'log-host', id: 'log' });
  const err = el('div');
  main.replaceChildren(head, err, progress, dagHost, tabs, logHost);
  const labels = new Map();
  const view = new LogView(logHost, { multi: true, label: (s) => labels.get(s) || s });
  const prog = new Map(); // node id -> last progress data

  const select = (s) => {
    selected = s;
    view.setFilter(s);
    const q = s ? `?step=${encodeURIComponent(s)}` : '';
    history.replaceState(null, '', `#/runs/${encodeURIComponent(id)}${q}`);
    draw();
  };

  const drawProgress = () => {
    if (!prog.size) return;
    progress.hidden = false;
    const finished = [...prog.values()].filter((p) => p.phase === 'done' || p.phase === 'deduplicated').length;
    // Open while something is being packaged or uploaded; a one-line summary once all is stored.
    const details = el('details', { open: finished < prog.size },
      el('summary', {}, `Packaging and upload: ${finished}/${prog.size} node archives stored`));
    progress.replaceChildren(details);
    details.append(...[...prog.values()].map((p) => {
      const total = p.total_bytes || 0;
      const pct = p.phase === 'done' || p.phase === 'deduplicated' ? 100 : total ? Math.round((100 * (p.bytes || 0)) / total) : 0;
      const bar = el('div');
      bar.style.width = `${pct}%`;
      return el('div', { class: 'progress', 'data-node': p.node_id, 'data-phase': p.phase },
        el('div', {}, `${p.label || p.node_id}: ${p.phase} · ${p.files || 0}/${p.total_files || 0} files · ${fmtBytes(p.bytes || 0)}${total ? ` of ${fmtBytes(total)}` : ''}`),
        el('div', { class: 'bar' }, bar));
    }));
  };

  const draw = () => {
    if (!run) return;
    for (const s of run.steps || []) labels.set(s.id, s.label || s.id);
    const links = [];
    if (safeURL(run.run_url)) links.push(el('a', { href: run.run_url, target: '_blank', rel: 'noopener', id: 'kfp-link' }, 'Kubeflow run ↗'));
    if (safeURL(run.object_storage_url)) links.push(el('a', { href: run.object_storage_url, target: '_blank', rel: 'noopener', id: 'artifacts-link' }, 'Artifacts ↗'));
    const panelHref = `panel.html#run=${encodeURIComponent(id)}${selected ? `&step=${encodeURIComponent(selected)}` : ''}`;
    links.push(el('a', { href: panelHref, target: '_blank', rel: 'noopener', id: 'panel-link' }, 'Log panel ↗'));
    const cancel = terminal(run.status) ? '' : el('button', {
      type: 'button', class: 'danger', id: 'cancel', onclick: async (e) => {
        e.target.disabled = true;
        try { run = await postJSON(`api/v1/runs/${encodeURIComponent(id)}:cancel`, undefined); draw(); } catch (x) { err.replaceChildren(errorBox(x)); }
      },
    }, 'Cancel');
    head.replaceChildren(el('h1', {}, run.name || run.id), el('span', { id: 'run-status' }, badge(run.status)),
      el('span', { class: 'meta' }, `${run.id} · ${run.runtime || ''}${run.source ? ` · ${run.source}` : ''} · started ${fmtTime(run.started_at || run.created_at)}${run.started_at ? ` · ${duration(run)}` : ''}`),
      ...links, cancel);
    if (run.error) err.replaceChildren(el('div', { class: 'error-box' }, run.error));
    renderDag(dagHost, run.steps || [], { onSelect: (s) => select(selected === s ? null : s), selected });
    const tab = (s, text) => el('button', { type: 'button', class: (selected || null) === s ? 'active' : '', 'data-step': s || '*', onclick: () => select(s) }, text);
    tabs.replaceChildren(tab(null, 'All steps'), ...(run.steps || []).map((s) => tab(s.id, `${s.label || s.id}${s.exit_code != null && s.status !== 'succeeded' ? ` (exit ${s.exit_code})` : ''}`)));
  };

  const applyEvent = (f) => {
    if (!run) return;
    if (f.type === 'step') {
      const s = (run.steps || []).find((x) => x.id === f.step);
      if (s) { s.status = f.status; if (f.exit_code != null) s.exit_code = f.exit_code; if (f.message) s.message = f.message; }
    } else if (f.type === 'run') {
      run.status = f.status;
      if (f.message && f.status === 'failed') run.error = f.message;
    } else if (f.type === 'progress' && f.data) {
      prog.set(f.data.node_id || f.step, f.data);
      drawProgress();
    }
    draw();
  };

  const stream = new Follower({
    run: id,
    on: {
      chunk: (ch) => view.addChunk(ch),
      lines: (s, ls) => view.addLines(s, ls),
      event: applyEvent,
      stepEnd: (f) => view.stepEnded(f, labels.get(f.step) || f.step),
      gap: (s, a, b, reason) => view.gapBanner(s, a, b, reason),
      state: (name, detail) => view.setStatus(detail ? `${name} ${detail}` : name),
    },
  });
  window.kfbridge.stream = stream;

  let stopPoll = null;
  getJSON(`api/v1/runs/${encodeURIComponent(id)}`).then((r) => {
    run = r;
    draw();
    if (selected) view.setFilter(selected);
    stream.start();
    // Events keep the page live; a slow poll fills in timestamps and covers servers without events.
    stopPoll = every(3000, async () => {
      if (run && terminal(run.status) && stream.done) { stopPoll && stopPoll(); return; }
      const fresh = await getJSON(`api/v1/runs/${encodeURIComponent(id)}`);
      // Never move a status backwards: what the stream reported may be newer than this snapshot.
      for (const s of fresh.steps || []) {
        const old = (run.steps || []).find((x) => x.id === s.id);
        if (old && rank(old.status) > rank(s.status)) { s.status = old.status; s.exit_code = old.exit_code; }
      }
      if (rank(run.status) > rank(fresh.status)) { fresh.status = run.status; fresh.error = run.error; }
      run = fresh;
      draw();
    });
  }).catch((e) => { main.replaceChildren(errorBox(e)); });

  return () => { stream.close(); if (stopPoll) stopPoll(); view.destroy(); };
}

// ---------------------------------------------------------------- login and routing

function loginPage(msg) {
  const input = el('input', { type: 'password', id: 'token', placeholder: 'token', autocomplete: 'current-password', size: 50 });
  const out = el('div');
  const form = el('form', { class: 'card' },
    el('p', {}, msg || 'Log in with the token printed by ', el('code', {}, 'kfbridge serve'), ' (or open the URL it printed).'),
    el('div', { class: 'form-row' }, input, el('button', { type: 'submit', class: 'primary' }, 'Log in')), out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try { await login(input.value.trim()); route(); } catch (x) { out.replaceChildren(errorBox(x)); }
  });
  main.replaceChildren(el('h1', {}, 'kfbridge'), form);
}

let authed = false;

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  if (!authed) {
    const s = await session();
    authed = !!s.authenticated;
    document.getElementById('session-state').textContent = authed ? '' : 'not logged in';
    if (!authed) { loginPage(); return; }
  }
  const h = location.hash.replace(/^#\/?/, '');
  const [path, query] = h.split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  document.querySelectorAll('[data-nav]').forEach((a) => a.classList.toggle('active', a.dataset.nav === (parts[0] || 'runs') && parts.length < 2));
  try {
    if (parts[0] === 'submit') cleanup = submitPage();
    else if (parts[0] === 'runs' && parts[1]) cleanup = runPage(parts[1], params.get('step'));
    else cleanup = runsPage();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { authed = false; loginPage(); return; }
    main.replaceChildren(errorBox(e));
  }
}

// Only real navigations re-route; the run page rewrites its own ?step= with replaceState.
window.addEventListener('hashchange', route);
window.kfbridge = window.kfbridge || {};
window.kfbridge.fetchLog = fetchLog;
route();
