// follow starts following a run (or one step) for a page: in a worker (logworker.js) when the
// browser allows it, else on the main thread with LogStream. Callbacks: chunk(chunk) from the
// worker (see chunk.js) or lines(step, lines) from the fallback, plus event, stepEnd, gap, state and done as in
// LogStream.

import { LogStream } from './stream.js';
import { getBearer } from './api.js';

export class Follower {
  constructor({ run, step = null, on }) {
    this.run = run;
    this.step = step;
    this.on = on;
    this.reconnects = 0;
    this.mode = null;
    this.done = false;
    this.worker = null;
    this.fallback = null;
  }

  start() {
    try {
      this.worker = new Worker(new URL('logworker.js', import.meta.url), { type: 'module', name: 'kfbridge-log' });
    } catch {
      this.worker = null;
    }
    if (!this.worker) { this.startFallback(); return; }
    let heard = false;
    this.worker.onmessage = (m) => { heard = true; for (const msg of m.data) this.dispatch(msg); };
    this.worker.onerror = (e) => {
      // A worker that cannot load (old browser, blocked by policy) must not cost the user the log.
      if (!heard) { e.preventDefault(); this.worker.terminate(); this.worker = null; this.startFallback(); }
    };
    this.worker.postMessage({ type: 'start', run: this.run, step: this.step, bearer: getBearer() });
  }

  startFallback() {
    const on = this.on;
    this.fallback = new LogStream({
      run: this.run,
      step: this.step,
      on: {
        ...on,
        state: (name, detail) => { this.reconnects = this.fallback.reconnects; this.mode = this.fallback.mode; if (on.state) on.state(name, detail); },
        done: () => { this.done = true; if (on.done) on.done(); },
      },
    });
    this.fallback.start();
  }

  dispatch(m) {
    const on = this.on;
    switch (m.type) {
      case 'chunk': if (on.chunk) on.chunk(m.chunk); break;
      case 'event': if (on.event) on.event(m.f); break;
      case 'stepEnd': if (on.stepEnd) on.stepEnd(m.f); break;
      case 'gap': if (on.gap) on.gap(m.step, m.a, m.b, m.reason); break;
      case 'state':
        this.reconnects = m.reconnects;
        this.mode = m.mode;
        if (on.state) on.state(m.name, m.detail);
        break;
      case 'done':
        this.reconnects = m.reconnects;
        this.mode = m.mode;
        this.done = true;
        if (on.done) on.done();
        break;
      default: break;
    }
  }

  close() {
    if (this.worker) {
      this.worker.postMessage({ type: 'close' });
      const w = this.worker;
      setTimeout(() => w.terminate(), 1000);
      this.worker = null;
    }
    if (this.fallback) this.fallback.close();
  }
}
