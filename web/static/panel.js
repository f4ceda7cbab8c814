// The standalone log panel: panel.html#run=<id>&step=<step> (or ?run=&step=), small enough to embed
// in a notebook output with IPython.display.IFrame. A cross-origin embed, where the SameSite=Strict
// session cookie is not sent, may pass #token=…; it is read from the fragment (never sent to a
// server or written to access logs) and removed from the address at once.

import { getJSON, setBearer, fetchLog, terminal } from './api.js';

window.kfbridge = window.kfbridge || {};
window.kfbridge.fetchLog = fetchLog;
import { Follower } from './follow.js';
import { LogView } from './logview.js';

const params = new URLSearchParams(location.search);
const frag = new URLSearchParams(location.hash.replace(/^#/, ''));
const run = frag.get('run') || params.get('run');
const step = frag.get('step') || params.get('step') || null;
const token = frag.get('token');
if (token) {
  setBearer(token);
  frag.delete('token');
  history.replaceState(null, '', `${location.pathname}${location.search}#${frag}`);
}

const title = document.getElementById('panel-title');
const statusEl = document.getElementById('panel-status');
const host = document.getElementById('panel-log');
document.getElementById('panel-open').href = `./#/runs/${encodeURIComponent(run || '')}${step ? `?step=${encodeURIComponent(step)}` : ''}`;

function setStatus(s, code) {
  statusEl.className = `badge st-${s}`;
  statusEl.dataset.status = s;
  statusEl.textContent = code != null && s !== 'succeeded' ? `${s} (exit ${code})` : s;
}

const labels = new Map();
const view = new LogView(host, {
  multi: !step,
  label: (s) => labels.get(s) || s,
  loadEarlier: (s, after, n) => fetchLog(run, s, after, n),
  ownsFind: true,
});

if (!run) {
  host.textContent = 'Missing run: use panel.html#run=<run id>&step=<step id>.';
} else {
  getJSON(`api/v1/runs/${encodeURIComponent(run)}`).then((r) => {
    for (const s of r.steps || []) labels.set(s.id, s.label || s.id);
    const st = step ? (r.steps || []).find((s) => s.id === step) : null;
    title.textContent = `${r.name || r.id}${st ? ` › ${st.label || st.id}` : ''}`;
    document.title = `${title.textContent} · kfbridge`;
    if (st) setStatus(st.status, st.exit_code); else setStatus(r.status);
  }).catch((e) => { title.textContent = e.message; });

  const stream = new Follower({
    run,
    step,
    on: {
      chunk: (ch) => view.addChunk(ch),
      lines: (s, ls) => view.addLines(s, ls),
      event: (f) => {
        if (step && f.type === 'step' && f.step === step) setStatus(f.status, f.exit_code);
        if (!step && f.type === 'run') setStatus(f.status);
      },
      stepEnd: (f) => {
        view.stepEnded(f, labels.get(f.step) || f.step);
        if (step && f.step === step && f.exit_code != null) setStatus(f.exit_code === 0 ? 'succeeded' : 'failed', f.exit_code);
      },
      gap: (s, a, b, reason) => view.gapBanner(s, a, b, reason),
      state: (name, detail) => {
        view.setStatus(detail ? `${name} ${detail}` : name);
        if (name === 'unauthorized') setStatus('failed');
      },
    },
  });
  window.kfbridge.stream = stream;
  stream.start();

  // A step subscription carries no status events, and a step cancelled or skipped before it ran
  // has no step end: a slow poll of the run keeps the badge right and ends the panel then.
  let idle = 0;
  const poll = setInterval(async () => {
    if (stream.done) { clearInterval(poll); return; }
    try {
      const r = await getJSON(`api/v1/runs/${encodeURIComponent(run)}`);
      const st = step ? (r.steps || []).find((s) => s.id === step) : null;
      const status = st ? st.status : r.status;
      if (!terminal(statusEl.dataset.status || '')) setStatus(status, st && st.exit_code);
      idle = terminal(status) ? idle + 1 : 0;
      if (idle >= 3 && !stream.done) {
        // Final for a while and still no end from the stream: nothing more will come.
        stream.close();
        clearInterval(poll);
        view.setStatus('ended');
      }
    } catch { /* keep following; the stream reports connection problems */ }
  }, 3000);
}

// A new #run=…&step=… in the same tab is a different panel: start over.
window.addEventListener('hashchange', () => location.reload());
