// The log stream's worker: the websocket, JSON decoding, dedup/resume (LogStream) and ANSI
// rendering all run here, off the page's main thread. The page receives ready-to-show rows in
// batches of at most ROWS_PER_POST, about once per frame, so even a 100,000-line burst leaves the
// main thread free to scroll and search.

import { LogStream } from './stream.js';
import { setBearer } from './api.js';
import { AnsiState, lineRow } from './ansi.js';

const ROWS_PER_POST = 1000;
const POST_MS = 16;

let stream = null;
const states = new Map();
let pending = [];
let pendingRows = 0;
let timer = 0;

function flush() {
  clearTimeout(timer);
  timer = 0;
  if (!pending.length) return;
  // Rows travel as columns: one string per field with NUL separators and the seqs in a typed array.
  // Structured-clone decoding of thousands of small objects costs the page several ms per batch;
  // a few long strings cost almost nothing, and String.split rebuilds them natively.
  const out = pending.map((m) => (m.type === 'rows' ? {
    type: 'cols', step: m.step, n: m.rows.length,
    q: Float64Array.from(m.rows, (r) => r.q),
    h: m.rows.map((r) => r.h).join('\0'),
    t: m.rows.map((r) => r.t).join('\0'),
    c: m.rows.map((r) => r.c).join('\0'),
  } : m));
  postMessage(out, out.filter((m) => m.type === 'cols').map((m) => m.q.buffer));
  pending = [];
  pendingRows = 0;
}

function queue(msg) {
  pending.push(msg);
  if (!timer) timer = setTimeout(flush, POST_MS);
}

function rows(step, lines) {
  let st = states.get(step);
  if (!st) { st = new AnsiState(); states.set(step, st); }
  for (const l of lines) {
    let last = pending[pending.length - 1];
    if (!last || last.type !== 'rows' || last.step !== step) { last = { type: 'rows', step, rows: [] }; queue(last); }
    const r = lineRow(l, st);
    // NUL separates the columns; a NUL in a line shows as U+FFFD.
    if (r.h.includes('\0')) { r.h = r.h.replaceAll('\0', '\ufffd'); r.t = r.t.replaceAll('\0', '\ufffd'); }
    last.rows.push(r);
    if (++pendingRows >= ROWS_PER_POST) flush();
  }
}

function status(name, detail) {
  queue({ type: 'state', name, detail, reconnects: stream.reconnects, mode: stream.mode, frames: stream.frames });
}

self.onmessage = (m) => {
  const d = m.data;
  if (d.type === 'start' && !stream) {
    setBearer(d.bearer);
    stream = new LogStream({
      run: d.run,
      step: d.step,
      on: {
        lines: rows,
        event: (f) => queue({ type: 'event', f }),
        stepEnd: (f) => queue({ type: 'stepEnd', f }),
        gap: (step, a, b, reason) => queue({ type: 'gap', step, a, b, reason }),
        state: status,
        done: () => { queue({ type: 'done', reconnects: stream.reconnects, mode: stream.mode }); flush(); },
      },
    });
    stream.start();
  } else if (d.type === 'close' && stream) {
    stream.close();
    flush();
  }
};
