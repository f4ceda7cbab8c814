// LogStream follows one run (all steps) or one step over the kfbridge live-log protocol v1
// (docs/protocol.md): websocket GET api/v1/ws with subscribe messages, or the run-scoped
// api/v1/runs/{id}/logs on servers without it. Delivery to the page is lossless and idempotent:
// per step, lines are passed on strictly in seq order, anything with seq <= the last one passed on is
// dropped (so a reconnect that replays from the start shows nothing twice), and holes — a `gap`
// frame, a jump in seq, or a heartbeat ahead of what arrived — are filled over REST before later
// lines are shown. After a drop it reconnects with exponential backoff and jitter (100 ms doubling
// to 10 s) and resubscribes from its last seq and last event seq.

import { fetchLog, getBearer, terminal, baseURL } from './api.js';

const FILL_CHUNK = 5000;
const FILL_MAX = 50000; // most lines one gap is filled with over REST

export class LogStream {
  /**
   * @param {object} o
   * @param {string} o.run run id
   * @param {string|null} o.step a step id, or null for every step and the run's events
   * @param {object} o.on callbacks: lines(step, lines), event(ev), stepEnd(frame), gap(step, from, to, reason),
   *   state(name, detail), done()
   */
  constructor({ run, step = null, on = {} }) {
    this.run = run;
    this.step = step;
    this.on = on;
    this.last = new Map(); // step -> last seq passed on
    this.events = 0; // last run event seq passed on
    this.ended = new Set(); // steps whose step_end (or terminal status) was passed on
    this.chains = new Map(); // step -> promise serializing that step's deliveries
    this.mode = null; // 'ws' | 'run'
    this.ws = null;
    this.attempt = 0;
    this.reconnects = 0;
    this.frames = 0;
    this.closed = false;
    this.done = false;
    this.timer = 0;
    this.hbTimer = 0;
  }

  /** start connects (after finding which endpoint the server offers). */
  async start() {
    if (!this.mode) this.mode = await probe();
    this.connect();
  }

  /** close stops following for good. */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.hbTimer);
    if (this.ws) { try { this.ws.close(1000, 'viewer closed'); } catch { /* already closed */ } }
  }

  wsURL() {
    const path = this.mode === 'ws' ? 'api/v1/ws' : `api/v1/runs/${encodeURIComponent(this.run)}/logs`;
    const u = new URL(path, baseURL());
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    if (this.mode === 'run') {
      if (this.step) {
        u.searchParams.set('step', this.step);
        u.searchParams.set('after_seq', String(this.last.get(this.step) || 0));
      }
      if (this.events) u.searchParams.set('events_after', String(this.events));
      // The run-scoped endpoint of older servers reads no messages: a bearer token (cross-origin
      // embed) has to ride on the upgrade request.
      if (getBearer()) u.searchParams.set('token', getBearer());
    }
    return u.href;
  }

  connect() {
    if (this.closed || this.done) return;
    this.state('connecting');
    let ws;
    try { ws = new WebSocket(this.wsURL()); } catch (e) { this.retry(); return; }
    this.ws = ws;
    let got = false;
    ws.onopen = () => {
      if (this.mode !== 'ws') return;
      if (getBearer()) ws.send(JSON.stringify({ type: 'auth', token: getBearer() }));
      const sub = { type: 'subscribe', run: this.run, step: this.step || '*' };
      if (this.step) sub.after_seq = this.last.get(this.step) || 0;
      // For a whole run, resume each step where it stopped (kfbridge's "steps" extension of the
      // subscribe message; servers that ignore it resend, and the duplicates are dropped here).
      else if (this.last.size) sub.steps = Object.fromEntries(this.last);
      if (this.events) sub.events_after = this.events;
      ws.send(JSON.stringify(sub));
    };
    ws.onmessage = (m) => {
      if (ws !== this.ws) return;
      if (!got) { got = true; this.attempt = 0; this.state('live'); }
      this.frames++;
      let f;
      try { f = JSON.parse(m.data); } catch { return; }
      this.handle(f);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      if (this.closed || this.done) return;
      if (ev.code === 4001) { this.state('unauthorized', ev.reason); return; }
      if (ev.code === 4004) { this.state('not found', ev.reason); return; }
      if (ev.code === 1000 && this.mode === 'run') {
        // The run-scoped endpoint closes normally after the run's final event.
        this.finish();
        return;
      }
      this.retry();
    };
  }

  retry() {
    if (this.closed || this.done) return;
    const base = Math.min(10000, 100 * 2 ** this.attempt);
    this.attempt++;
    this.reconnects++;
    const delay = base / 2 + Math.random() * base / 2;
    this.state('reconnecting', `in ${Math.round(delay)} ms`);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  state(name, detail) { if (this.on.state) this.on.state(name, detail); }

  wants(step) { return !this.step || step === this.step; }

  /** serial runs fn after everything queued for step, so a step's output is passed on in order. */
  serial(step, fn) {
    const prev = this.chains.get(step) || Promise.resolve();
    const next = prev.then(fn).catch((e) => console.error('kfbridge log stream:', e));
    this.chains.set(step, next);
    return next;
  }

  handle(f) {
    const run = f.run || this.run;
    if (run !== this.run) return;
    switch (f.type) {
      case 'lines':
        if (this.wants(f.step) && f.lines && f.lines.length) this.serial(f.step, () => this.lines(f.step, f.lines));
        break;
      case 'step_end':
        if (this.wants(f.step)) this.serial(f.step, () => this.stepEnd(f));
        break;
      case 'gap':
        if (this.wants(f.step)) this.serial(f.step, () => this.fill(f.step, f.from_seq - 1, f.to_seq, f.reason));
        break;
      case 'heartbeat':
        this.heartbeat(f.steps || {});
        break;
      case 'step':
      case 'run':
      case 'progress':
        this.event(f);
        break;
      case 'error':
        this.state('error', f.message || f.code);
        break;
      default: // hello and future frames
        break;
    }
  }

  event(f) {
    if (f.seq) {
      if (f.seq <= this.events) return;
      this.events = f.seq;
    }
    const deliver = () => {
      if (this.on.event) this.on.event(f);
      if (f.type === 'step' && f.step && this.wants(f.step) && terminal(f.status) && f.status !== 'skipped') {
        // Servers without step_end: the terminal step event follows the step's last line.
        this.markEnded(f.step, { type: 'step_end', step: f.step, exit_code: f.exit_code, status: f.status, synthetic: true });
      }
      if (f.type === 'run' && terminal(f.status)) this.finish();
    };
    if (f.type === 'step' && f.step) this.serial(f.step, deliver);
    else if (f.type === 'run') {
      // Pass the run's end on after every step's queued output.
      Promise.all([...this.chains.values()]).then(deliver);
    } else deliver();
  }

  async lines(step, lines) {
    const last = this.last.get(step) || 0;
    let i = 0;
    while (i < lines.length && lines[i].seq <= last) i++;
    if (i === lines.length) return;
    const fresh = i ? lines.slice(i) : lines;
    if (fresh[0].seq > last + 1) await this.fill(step, last, fresh[0].seq - 1, 'hole');
    this.pass(step, fresh);
  }

  /** pass hands contiguous lines on, dropping anything already passed on. */
  pass(step, lines) {
    const last = this.last.get(step) || 0;
    let i = 0;
    while (i < lines.length && lines[i].seq <= last) i++;
    if (i === lines.length) return;
    const fresh = i ? lines.slice(i) : lines;
    this.last.set(step, fresh[fresh.length - 1].seq);
    if (this.on.lines) this.on.lines(step, fresh);
  }

  /** fill fetches lines after..to of step over REST; if that is impossible it reports the gap. */
  async fill(step, after, to, reason) {
    let cur = Math.max(after, this.last.get(step) || 0);
    if (to - cur > FILL_MAX) {
      // A huge gap (a late join to a long log whose start left the server's memory): fetch only its
      // newest FILL_MAX lines. At the start of the log the page offers "Load earlier" for the rest;
      // in the middle the skipped range is reported.
      const skip = to - FILL_MAX;
      if (cur > 0 && this.on.gap) this.on.gap(step, cur + 1, skip, 'too large to fetch');
      cur = skip;
      this.last.set(step, Math.max(this.last.get(step) || 0, skip));
    }
    while (cur < to) {
      let got = null;
      try { got = await fetchLog(this.run, step, cur, Math.min(FILL_CHUNK, to - cur)); } catch { got = null; }
      if (!got || !got.length) break;
      this.pass(step, got.filter((l) => l.seq <= to));
      const now = this.last.get(step) || 0;
      if (now <= cur) break;
      cur = now;
    }
    if (cur < to) {
      if (this.on.gap) this.on.gap(step, cur + 1, to, reason);
      this.last.set(step, to);
    }
  }

  stepEnd(f) { this.markEnded(f.step, f); }

  markEnded(step, f) {
    if (this.ended.has(step)) return;
    this.ended.add(step);
    if (this.on.stepEnd) this.on.stepEnd(f);
    if (this.step && step === this.step) this.finish();
  }

  heartbeat(steps) {
    clearTimeout(this.hbTimer);
    // A heartbeat ahead of what arrived means a missed tail; give frames in flight a moment first.
    const behind = Object.entries(steps).filter(([s, seq]) => this.wants(s) && seq > (this.last.get(s) || 0));
    if (!behind.length) return;
    this.hbTimer = setTimeout(() => {
      for (const [s, seq] of behind) {
        if (seq > (this.last.get(s) || 0)) this.serial(s, () => this.fill(s, this.last.get(s) || 0, seq, 'tail'));
      }
    }, 2000);
  }

  finish() {
    if (this.done) return;
    this.done = true;
    Promise.all([...this.chains.values()]).then(() => {
      this.state('ended');
      if (this.ws) { try { this.ws.close(1000, 'done'); } catch { /* closed */ } }
      if (this.on.done) this.on.done();
    });
  }
}

let probed = null;
/** probe finds out whether the server has the multiplexed api/v1/ws endpoint (404 means no). */
function probe() {
  if (!probed) {
    const h = {};
    if (getBearer()) h.Authorization = `Bearer ${getBearer()}`;
    probed = fetch(new URL('api/v1/ws', baseURL()), { headers: h, credentials: 'same-origin' })
      .then((r) => (r.status === 404 ? 'run' : 'ws'), () => 'run');
  }
  return probed;
}
