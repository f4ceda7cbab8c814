// The log stream's worker: the websocket, JSON decoding, dedup/resume (LogStream) and ANSI
// rendering all run here, off the page's main thread. The page receives ready-to-show rows as
// chunks (chunk.js) of at most ROWS_PER_POST rows, about once per frame, so even a 100,000-line burst leaves the
// main thread free to scroll and search.

import { LogStream } from './stream.js';
import { setBearer } from './api.js';
import { AnsiState, lineRow } from './ansi.js';
import { makeChunk, transferables } from './chunk.js';

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
  const out = pending.map((m) => (m.type === 'rows' ? { type: 'chunk', chunk: makeChunk(m.step, m.rows) } : m));
  postMessage(out, out.filter((m) => m.type === 'chunk').flatMap((m) => transferables(m.chunk)));
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
    last.rows.push(lineRow(l, st));
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
