// A chunk is a run of consecutive log rows of one step stored as columns: the seqs in a typed array
// and each text field (html, lower-cased plain text, row classes) as ONE string with NUL separators
// plus a typed array of offsets. 100,000 rows are then ~300 strings and typed arrays instead of
// 400,000 small objects: nothing for the garbage collector to copy, cheap to post from the worker,
// and search runs String.indexOf over whole chunks.

/**
 * makeChunk builds a chunk from rows [{q, h, t, c}] of one step. NUL inside a field becomes U+FFFD.
 */
export function makeChunk(step, rows) {
  const n = rows.length;
  const q = new Float64Array(n);
  for (let i = 0; i < n; i++) q[i] = rows[i].q;
  const col = (get) => {
    const off = new Uint32Array(n + 1);
    const parts = new Array(n);
    let pos = 0;
    for (let i = 0; i < n; i++) {
      let v = get(rows[i]);
      if (v.includes('\0')) v = v.replaceAll('\0', '\ufffd');
      parts[i] = v;
      off[i] = pos;
      pos += v.length + 1;
    }
    off[n] = pos;
    return [parts.join('\0'), off];
  };
  const [h, ho] = col((r) => r.h);
  const [t, to] = col((r) => r.t);
  const [c, co] = col((r) => r.c);
  return { step, n, q, h, ho, t, to, c, co };
}

/** field returns row i of a NUL-joined column. */
export function field(s, off, i) { return s.slice(off[i], off[i + 1] - 1); }

/** rowAt returns the row index in a chunk holding string position pos of the column with offsets off. */
export function rowAt(off, pos) {
  let lo = 0, hi = off.length - 2;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (off[mid] <= pos) lo = mid; else hi = mid - 1;
  }
  return lo;
}

/** transferables lists a chunk's buffers for postMessage. */
export function transferables(ch) { return [ch.q.buffer, ch.ho.buffer, ch.to.buffer, ch.co.buffer]; }
