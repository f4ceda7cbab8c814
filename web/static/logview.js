// LogView renders a step's (or a run's) log: a virtualized list of fixed-height rows, so 100,000+
// lines cost only the ~60 rows on screen. Rows are stored in chunks (chunk.js) as the log worker
// renders them; a chunk is appended in O(1), so a burst never blocks the main thread, and search
// runs String.indexOf over whole chunks in animation-frame slices (Ctrl+F cannot see virtualized
// rows).

import { AnsiState, lineRow, escapeHTML } from './ansi.js';
import { makeChunk, field, rowAt } from './chunk.js';
import { el } from './api.js';

const BUDGET_MS = 4; // main-thread work per frame: short tasks stay short even on a busy CPU
const OVERSCAN = 12;
const BACKLOG_RENDER_MS = 125;
const MAX_ROWS = 500000; // beyond this the oldest chunks are dropped (and can be loaded again)
const FOLLOW_TOLERANCE = 20; // px from the bottom that still counts as pinned (as KFP's viewer)
const LINES_PER_CHUNK = 256; // main-thread fallback: lines rendered per slice

export class LogView {
  /**
   * @param {HTMLElement} host the .log-host element
   * @param {object} o
   * @param {boolean} o.multi rows of several steps: show a step column
   * @param {(step: string) => string} o.label step label for the step column
   * @param {(step: string, afterSeq: number, n: number) => Promise<object[]|null>} o.loadEarlier fetches lines
   * @param {boolean} o.ownsFind the page is only this log: Ctrl/Cmd+F always searches it
   */
  constructor(host, { multi = false, label = (s) => s, loadEarlier = null, ownsFind = false } = {}) {
    this.host = host;
    this.ownsFind = ownsFind;
    this.multi = multi;
    this.label = label;
    this.loadEarlierFn = loadEarlier;
    this.chunks = []; // each with .start, its first row's index
    this.total = 0;
    this.vis = null; // row indices shown when a step filter is set
    this.filter = null;
    this.queue = [];
    this.qi = 0;
    this.states = new Map();
    this.follow = true;
    this.frame = 0;
    this.rowH = 18;
    this.lastRender = 0;
    this.pool = [];
    this.query = '';
    this.matches = []; // visible positions of matching rows, ascending
    this.matchSet = new Set(); // row indices of matches
    this.cur = -1;
    this.searchGen = 0;
    this.searching = false;
    this.firstSeq = new Map(); // step -> first seq held (for "load earlier")
    this.status = '';
    this.build();
    if (!window.kfbridge) window.kfbridge = {};
    window.kfbridge.logView = this;
    host.logView = this;
  }

  build() {
    const h = this.host;
    h.replaceChildren();
    this.search = el('input', { type: 'search', placeholder: 'Search log', 'aria-label': 'Search log', class: 'log-search' });
    this.count = el('span', { class: 'count' });
    this.prevBtn = el('button', { type: 'button', title: 'Previous match (Shift+Enter)', onclick: () => this.step(-1) }, '↑');
    this.nextBtn = el('button', { type: 'button', title: 'Next match (Enter)', onclick: () => this.step(1) }, '↓');
    this.followBtn = el('button', { type: 'button', class: 'follow on', title: 'Keep the newest line in view', onclick: () => this.setFollow(!this.follow) }, 'Follow');
    this.earlierBtn = el('button', { type: 'button', class: 'earlier', hidden: true, onclick: () => this.loadEarlier() }, 'Load earlier');
    this.info = el('span', { class: 'info' });
    h.append(el('div', { class: 'log-bar' }, this.search, this.prevBtn, this.nextBtn, this.count, this.followBtn, this.earlierBtn, this.info));
    this.scroller = el('div', { class: 'log-scroll', tabindex: '0' });
    this.spacer = el('div', { class: 'log-spacer' });
    this.rowsEl = el('div', { class: 'log-rows' });
    this.empty = el('div', { class: 'log-empty' }, 'Waiting for output…');
    this.scroller.append(this.spacer, this.rowsEl, this.empty);
    h.append(this.scroller);
    let t = 0;
    this.search.addEventListener('input', () => { clearTimeout(t); t = setTimeout(() => this.setQuery(this.search.value), 150); });
    this.search.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); clearTimeout(t); if (this.search.value.toLowerCase() !== this.query) this.setQuery(this.search.value); else this.step(e.shiftKey ? -1 : 1); }
    });
    // Ctrl/Cmd+F cannot find virtualized rows: send it to the log's own search while the log has
    // focus (or always, on a page that is only the log), Escape clears it.
    const find = (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key === 'f' && (this.ownsFind || h.contains(document.activeElement))) {
        e.preventDefault();
        this.search.focus();
        this.search.select();
      }
    };
    document.addEventListener('keydown', find);
    this.unlisten = () => document.removeEventListener('keydown', find);
    this.search.addEventListener('keydown', (e) => { if (e.key === 'Escape') { this.search.value = ''; this.setQuery(''); } });
    this.scroller.addEventListener('scroll', () => {
      const s = this.scroller;
      const atBottom = s.scrollTop + s.clientHeight >= s.scrollHeight - FOLLOW_TOLERANCE;
      if (atBottom !== this.follow) this.setFollow(atBottom, false);
      this.lastRender = 0; // the user is looking: draw now
      this.schedule();
    }, { passive: true });
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(this.scroller);
  }

  /** destroy detaches the view from the document (its page is going away). */
  destroy() {
    this.unlisten();
    this.resize.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = -1; // never schedule again
    this.searchGen++;
  }

  setFollow(on, scroll = true) {
    this.follow = on;
    this.followBtn.classList.toggle('on', on);
    if (on && scroll) this.schedule();
  }

  /** setStatus shows a short text in the bar (connection state). */
  setStatus(s) { this.status = s; this.schedule(); }

  /** addChunk queues a chunk of rows rendered by the log worker. */
  addChunk(ch) {
    if (!ch.n) return;
    this.noteFirst(ch.step, ch.q[0]);
    this.queue.push({ chunk: ch });
    this.schedule();
  }

  /** addLines queues raw protocol lines of one step (main-thread fallback), rendered in slices. */
  addLines(step, lines) {
    if (!lines.length) return;
    this.noteFirst(step, lines[0].seq);
    this.queue.push({ step, lines, off: 0 });
    this.schedule();
  }

  /** addBanner queues a full-width notice row; html must be escaped by the caller. */
  addBanner(step, html, kind) {
    const text = html.replace(/<[^>]*>/g, '').toLowerCase();
    this.queue.push({ chunk: makeChunk(step, [{ q: 0, h: html, t: text, c: `banner ${kind || ''}` }]) });
    this.schedule();
  }

  /** stepEnded adds the banner that closes a step's log: its exit code (or final status). */
  stepEnded(f, label) {
    const code = f.exit_code;
    const ok = code === 0 || (code == null && f.status === 'succeeded');
    const what = code != null ? `exit code ${code}` : (f.status || 'ended');
    this.addBanner(f.step, escapeHTML(`■ ${label} finished: ${what}${f.lines != null ? ` · ${f.lines} lines` : ''}`), ok ? 'ok' : 'fail');
  }

  /** gapBanner reports lines a..b of a step that cannot be shown. */
  gapBanner(step, a, b, reason) {
    this.addBanner(step, escapeHTML(`lines ${a}–${b} are not available here (${reason})`), 'gap');
  }

  noteFirst(step, seq) {
    if (this.firstSeq.has(step)) return;
    this.firstSeq.set(step, seq);
    if (seq > 1 && this.loadEarlierFn && !this.multi) this.earlierBtn.hidden = false;
  }

  /** setFilter shows only the rows of one step (null: all). */
  setFilter(step) {
    this.filter = step;
    if (step == null) this.vis = null;
    else {
      this.vis = [];
      for (const ch of this.chunks) if (ch.step === step) for (let j = 0; j < ch.n; j++) this.vis.push(ch.start + j);
    }
    if (this.query) this.setQuery(this.query, true);
    if (!this.follow) this.scroller.scrollTop = 0;
    this.lastRender = 0;
    this.schedule();
  }

  /** size is the number of rows shown (with the filter). */
  size() { return this.vis ? this.vis.length : this.total; }
  /** count is the number of rows held. */
  countRows() { return this.total; }

  /** locate returns [chunk, row in chunk] of row index i. */
  locate(i) {
    const cs = this.chunks;
    let lo = 0, hi = cs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (cs[mid].start <= i) lo = mid; else hi = mid - 1;
    }
    const ch = cs[lo];
    return [ch, i - ch.start];
  }

  /** row returns row index i as {i, s, q, h, t, c}. */
  row(i) {
    const [ch, j] = this.locate(i);
    return { i, s: ch.step, q: ch.q[j], h: field(ch.h, ch.ho, j), t: field(ch.t, ch.to, j), c: field(ch.c, ch.co, j) };
  }

  /** indexAt maps a visible position to a row index. */
  indexAt(pos) { return this.vis ? this.vis[pos] : pos; }

  schedule() {
    if (this.frame === 0) this.frame = requestAnimationFrame(() => { this.frame = 0; this.tick(); });
  }

  tick() {
    const t0 = performance.now();
    while (this.qi < this.queue.length && performance.now() - t0 < BUDGET_MS) {
      const item = this.queue[this.qi];
      if (item.chunk) { this.pushChunk(item.chunk); this.qi++; continue; }
      // Fallback lines: render a slice into a chunk.
      let st = this.states.get(item.step);
      if (!st) { st = new AnsiState(); this.states.set(item.step, st); }
      const end = Math.min(item.lines.length, item.off + LINES_PER_CHUNK);
      const rows = [];
      for (let k = item.off; k < end; k++) rows.push(lineRow(item.lines[k], st));
      item.off = end;
      this.pushChunk(makeChunk(item.step, rows));
      if (item.off >= item.lines.length) this.qi++;
    }
    if (this.qi === this.queue.length) { this.queue = []; this.qi = 0; }
    else if (this.qi > 1024) { this.queue = this.queue.slice(this.qi); this.qi = 0; }
    if (this.total > MAX_ROWS) this.trim();
    // While a backlog is being taken in (a late join, a replay), following the bottom would restyle
    // every row every frame for text nobody can read at that speed: refresh the view ~8 times a
    // second instead, and every frame otherwise.
    const now = performance.now();
    if (!(this.queue.length && this.follow) || now - this.lastRender >= BACKLOG_RENDER_MS) {
      this.render();
      this.lastRender = now;
    }
    if (this.queue.length || this.searching) this.schedule();
  }

  pushChunk(ch) {
    ch.start = this.total;
    this.chunks.push(ch);
    this.total += ch.n;
    const before = this.size();
    if (this.vis) {
      if (ch.step !== this.filter) return;
      for (let j = 0; j < ch.n; j++) this.vis.push(ch.start + j);
    }
    if (this.query && !this.searching) {
      for (const j of chunkHits(ch, this.query)) { this.matches.push(before + j); this.matchSet.add(ch.start + j); }
      this.updateCount();
    }
  }

  /** trim drops the oldest chunks until at most keep rows remain (they can be loaded again). */
  trim(keep = MAX_ROWS * 0.9) {
    let drop = 0;
    let k = 0;
    while (k < this.chunks.length - 1 && this.total - drop > keep) drop += this.chunks[k++].n;
    if (!drop) return;
    this.chunks.splice(0, k);
    for (const ch of this.chunks) ch.start -= drop;
    this.total -= drop;
    let shift = drop;
    if (this.vis) {
      const before = this.vis.length;
      this.vis = this.vis.filter((i) => i >= drop).map((i) => i - drop);
      shift = before - this.vis.length;
    }
    this.matches = this.matches.filter((p) => p >= shift).map((p) => p - shift);
    this.matchSet = new Set([...this.matchSet].filter((i) => i >= drop).map((i) => i - drop));
    this.cur = Math.min(this.cur, this.matches.length - 1);
    const firsts = new Map();
    for (const ch of this.chunks) if (!firsts.has(ch.step) && ch.q[0]) firsts.set(ch.step, ch.q[0]);
    this.firstSeq = firsts;
    if (!this.follow) this.scroller.scrollTop = Math.max(0, this.scroller.scrollTop - shift * this.rowH);
    if (this.loadEarlierFn && !this.multi) this.earlierBtn.hidden = false;
  }

  render() {
    const n = this.size();
    const s = this.scroller;
    const total = n * this.rowH;
    if (this.spacer._h !== total) { this.spacer.style.height = `${total}px`; this.spacer._h = total; }
    this.empty.hidden = n > 0;
    if (this.follow && n) {
      const bottom = Math.max(0, total - s.clientHeight);
      if (Math.abs(s.scrollTop - bottom) > 1) s.scrollTop = bottom;
    }
    const first = Math.max(0, Math.floor(s.scrollTop / this.rowH) - OVERSCAN);
    const count = Math.max(0, Math.min(n - first, Math.ceil(s.clientHeight / this.rowH) + 2 * OVERSCAN));
    while (this.pool.length < count) { const d = document.createElement('div'); this.rowsEl.append(d); this.pool.push(d); }
    this.rowsEl.style.transform = `translateY(${first * this.rowH}px)`;
    const curIdx = this.cur >= 0 ? this.indexAt(this.matches[this.cur]) : -1;
    for (let k = 0; k < this.pool.length; k++) {
      const d = this.pool[k];
      if (k >= count) { if (!d.hidden) { d.hidden = true; d._i = -1; } continue; }
      const i = this.indexAt(first + k);
      const mark = i === curIdx ? 2 : this.matchSet.has(i) ? 1 : 0;
      const [ch, j] = this.locate(i);
      if (d._ch === ch && d._j === j && d._mark === mark && !d.hidden) continue;
      d.hidden = false;
      d._ch = ch;
      d._j = j;
      d._mark = mark;
      const q = ch.q[j];
      d.className = `ln ${field(ch.c, ch.co, j)}${mark === 2 ? ' cur' : mark === 1 ? ' hit' : ''}`;
      d.dataset.seq = q;
      d.dataset.step = ch.step;
      const no = q ? `<span class="no">${q}</span>` : '<span class="no"></span>';
      const sp = this.multi ? `<span class="sp">${escapeHTML(this.label(ch.step))}</span>` : '';
      d.innerHTML = no + sp + field(ch.h, ch.ho, j);
    }
    this.info.textContent = `${thousands(n)} line${n === 1 ? '' : 's'}${this.queue.length ? ' …' : ''}${this.status ? ` · ${this.status}` : ''}`;
  }

  // ---- search ----

  setQuery(q, keepPosition = false) {
    this.query = q.toLowerCase();
    this.matches = [];
    this.matchSet = new Set();
    this.cur = -1;
    const gen = ++this.searchGen;
    if (!this.query) { this.searching = false; this.count.textContent = ''; this.lastRender = 0; this.schedule(); return; }
    this.searching = true;
    this.count.textContent = 'searching…';
    let k = 0; // chunk
    let pos = 0; // visible position of chunk k's first shown row
    const slice = () => {
      if (gen !== this.searchGen) return;
      const t0 = performance.now();
      while (k < this.chunks.length && performance.now() - t0 < BUDGET_MS) {
        const ch = this.chunks[k++];
        if (this.vis && ch.step !== this.filter) continue;
        for (const j of chunkHits(ch, this.query)) { this.matches.push(pos + j); this.matchSet.add(ch.start + j); }
        pos += ch.n;
      }
      if (k < this.chunks.length) { requestAnimationFrame(slice); return; }
      this.searching = false;
      if (!keepPosition && this.matches.length) {
        // Start at the first match at or below the top of the view.
        const top = Math.floor(this.scroller.scrollTop / this.rowH);
        let m = this.matches.findIndex((p) => p >= top);
        if (m < 0) m = 0;
        this.goto(m);
      } else this.updateCount();
      this.lastRender = 0;
      this.schedule();
    };
    requestAnimationFrame(slice);
  }

  updateCount() {
    this.count.textContent = this.query ? (this.matches.length ? `${this.cur + 1}/${this.matches.length}` : 'no match') : '';
  }

  step(d) {
    if (!this.matches.length) return;
    const k = this.cur < 0 ? (d > 0 ? 0 : this.matches.length - 1) : (this.cur + d + this.matches.length) % this.matches.length;
    this.goto(k);
  }

  goto(k) {
    this.cur = k;
    this.setFollow(false, false);
    const s = this.scroller;
    s.scrollTop = Math.max(0, this.matches[k] * this.rowH - s.clientHeight / 2);
    this.updateCount();
    this.lastRender = 0;
    this.schedule();
  }

  // ---- load earlier ----

  async loadEarlier(n = 5000) {
    if (!this.loadEarlierFn || this.multi || !this.chunks.length) return;
    const step = this.chunks.find((ch) => ch.q[0])?.step;
    if (step == null) return;
    const first = this.firstSeq.get(step) || 1;
    if (first <= 1) { this.earlierBtn.hidden = true; return; }
    this.earlierBtn.disabled = true;
    try {
      const from = Math.max(0, first - 1 - n);
      const lines = await this.loadEarlierFn(step, from, first - 1 - from);
      if (!lines || !lines.length) { this.earlierBtn.textContent = 'Earlier lines unavailable'; return; }
      const st = new AnsiState(); // the colour state before these lines is unknown; start clean
      const rows = lines.filter((l) => l.seq < first).map((l) => lineRow(l, st));
      if (!rows.length) return;
      const ch = makeChunk(step, rows);
      ch.start = 0;
      for (const c of this.chunks) c.start += ch.n;
      this.chunks.unshift(ch);
      this.total += ch.n;
      if (this.vis) this.vis = [...Array.from({ length: ch.n }, (_, j) => j), ...this.vis.map((i) => i + ch.n)];
      this.matches = this.matches.map((p) => p + ch.n);
      this.matchSet = new Set([...this.matchSet].map((i) => i + ch.n));
      if (this.query) {
        const hits = [...chunkHits(ch, this.query)];
        this.matches = [...hits, ...this.matches];
        for (const j of hits) this.matchSet.add(j);
        if (this.cur >= 0) this.cur += hits.length;
      }
      this.firstSeq.set(step, ch.q[0]);
      this.scroller.scrollTop += ch.n * this.rowH;
      this.earlierBtn.hidden = ch.q[0] <= 1;
      this.lastRender = 0;
      this.render();
    } finally {
      this.earlierBtn.disabled = false;
    }
  }

  // ---- introspection (diagnostics and the UI tests) ----

  /** grep returns up to max rows whose lower-cased text contains s, as {i, s, q, h, t, c}. */
  grep(s, max = 1000) {
    const out = [];
    for (const ch of this.chunks) {
      for (const j of chunkHits(ch, s.toLowerCase())) {
        out.push(this.row(ch.start + j));
        if (out.length >= max) return out;
      }
    }
    return out;
  }

  /** countMatching counts the rows whose lower-cased text contains s. */
  countMatching(s) {
    let n = 0;
    for (const ch of this.chunks) for (const _ of chunkHits(ch, s.toLowerCase())) n++; // eslint-disable-line no-unused-vars
    return n;
  }

  /** stats summarizes the held lines per step: count, first and last seq, duplicates, holes. */
  stats() {
    const steps = {};
    for (const ch of this.chunks) {
      for (let j = 0; j < ch.n; j++) {
        const q = ch.q[j];
        if (!q) continue;
        let s = steps[ch.step];
        if (!s) s = steps[ch.step] = { count: 0, first: q, last: 0, dupes: 0, holes: 0 };
        if (s.last && q <= s.last) s.dupes++;
        else if (s.last && q > s.last + 1) s.holes += q - s.last - 1;
        s.count++;
        s.last = Math.max(s.last, q);
      }
    }
    return { rows: this.total, visible: this.size(), queued: this.queue.length - this.qi, steps };
  }
}

/** chunkHits yields the rows of a chunk whose lower-cased text contains q (non-empty). */
function* chunkHits(ch, q) {
  if (!q) return;
  let from = 0;
  for (;;) {
    const p = ch.t.indexOf(q, from);
    if (p < 0) return;
    const j = rowAt(ch.to, p);
    // A match across the NUL separator of two rows is not a match.
    if (p + q.length <= ch.to[j + 1] - 1) { yield j; from = ch.to[j + 1]; } else from = p + 1;
  }
}

/** thousands formats n as 100,000 (without Intl: its first use loads locale data, a long task). */
function thousands(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ','); }
