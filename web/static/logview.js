// LogView renders a step's (or a run's) log: a virtualized list of fixed-height rows, so 100,000+
// lines cost only the ~60 rows on screen. Arriving lines are queued and parsed (ANSI, `\r` collapse,
// KFP highlighting) in animation frames under a time budget, so a burst never blocks the main
// thread; search scans the in-memory model in slices too (Ctrl+F cannot see virtualized rows).

import { AnsiState, lineRow, escapeHTML, installColours } from './ansi.js';
import { el } from './api.js';

const BUDGET_MS = 4; // main-thread work per frame: short tasks stay short even on a busy CPU
const OVERSCAN = 12;
const BACKLOG_RENDER_MS = 125;
const MAX_ROWS = 250000; // beyond this the oldest rows are dropped (and can be loaded again)
const TRIM_ROWS = 25000;
const FOLLOW_TOLERANCE = 20; // px from the bottom that still counts as pinned (as KFP's viewer)

export class LogView {
  /**
   * @param {HTMLElement} host the .log-host element
   * @param {object} o
   * @param {boolean} o.multi rows of several steps: show a step column
   * @param {(step: string) => string} o.label step label for the step column
   * @param {(step: string, beforeSeq: number, n: number) => Promise<object[]|null>} o.loadEarlier fetches lines
   */
  constructor(host, { multi = false, label = (s) => s, loadEarlier = null } = {}) {
    installColours();
    this.host = host;
    this.multi = multi;
    this.label = label;
    this.loadEarlierFn = loadEarlier;
    this.rows = [];
    this.vis = null; // indices of rows shown when a step filter is set
    this.filter = null;
    this.queue = [];
    this.qi = 0;
    this.states = new Map();
    this.follow = true;
    this.frame = 0;
    this.dirty = true;
    this.rowH = 18;
    this.lastRender = 0;
    this.pool = [];
    this.query = '';
    this.matches = []; // visible positions of matching rows, ascending
    this.matchSet = new Set(); // the matching row objects
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
      if (e.key === 'Enter') { e.preventDefault(); clearTimeout(t); if (this.search.value !== this.query) this.setQuery(this.search.value); else this.step(e.shiftKey ? -1 : 1); }
    });
    this.scroller.addEventListener('scroll', () => {
      const s = this.scroller;
      const atBottom = s.scrollTop + s.clientHeight >= s.scrollHeight - FOLLOW_TOLERANCE;
      if (atBottom !== this.follow) this.setFollow(atBottom, false);
      this.schedule();
    }, { passive: true });
    new ResizeObserver(() => { this.dirty = true; this.schedule(); }).observe(this.scroller);
    const probe = el('div', { class: 'ln' }, 'x');
    this.rowsEl.append(probe);
    this.rowH = probe.getBoundingClientRect().height || 18;
    probe.remove();
  }

  setFollow(on, scroll = true) {
    this.follow = on;
    this.followBtn.classList.toggle('on', on);
    if (on && scroll) { this.dirty = true; this.schedule(); }
  }

  /** setStatus shows a short text in the bar (connection state). */
  setStatus(s) { this.status = s; this.dirty = true; this.schedule(); }

  /** addLines queues lines of one step (already deduplicated and in seq order). */
  addLines(step, lines) {
    if (!this.firstSeq.has(step) && lines.length) {
      this.firstSeq.set(step, lines[0].seq);
      if (lines[0].seq > 1 && this.loadEarlierFn && !this.multi) this.earlierBtn.hidden = false;
    }
    this.queue.push({ step, lines });
    this.schedule();
  }

  /**
   * addRows queues rows already rendered by the log worker, as columns {n, q: seqs, h, t, c: fields
   * joined with NUL} (see logworker.js).
   */
  addRows(step, cols) {
    if (!cols.n) return;
    if (!this.firstSeq.has(step)) {
      this.firstSeq.set(step, cols.q[0]);
      if (cols.q[0] > 1 && this.loadEarlierFn && !this.multi) this.earlierBtn.hidden = false;
    }
    this.queue.push({ step, cols, q: cols.q, h: cols.h.split('\0'), t: cols.t.split('\0'), c: cols.c.split('\0'), len: cols.n });
    this.schedule();
  }

  /** addBanner queues a full-width notice row (step end, gap). */
  addBanner(step, html, kind) {
    this.queue.push({ step, banner: html, kind });
    this.schedule();
  }

  /** setFilter shows only the rows of one step (null: all). */
  setFilter(step) {
    this.filter = step;
    if (step == null) this.vis = null;
    else {
      this.vis = [];
      for (let i = 0; i < this.rows.length; i++) if (this.rows[i].s === step) this.vis.push(i);
    }
    this.dirty = true;
    if (this.query) this.setQuery(this.query, true);
    if (this.follow) this.schedule(); else { this.scroller.scrollTop = 0; this.schedule(); }
  }

  size() { return this.vis ? this.vis.length : this.rows.length; }
  at(i) { return this.vis ? this.rows[this.vis[i]] : this.rows[i]; }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.tick(); });
  }

  tick() {
    const t0 = performance.now();
    let added = 0;
    while (this.qi < this.queue.length && performance.now() - t0 < BUDGET_MS) {
      added += this.parseSome(this.queue[this.qi], t0);
      const item = this.queue[this.qi];
      if (item.banner != null || item.off >= (item.cols ? item.len : item.lines.length)) this.qi++;
    }
    if (this.qi === this.queue.length) { this.queue = []; this.qi = 0; }
    else if (this.qi > 1024) { this.queue = this.queue.slice(this.qi); this.qi = 0; }
    if (this.rows.length > MAX_ROWS) this.trim(this.rows.length - MAX_ROWS + TRIM_ROWS);
    if (added) this.dirty = true;
    // While a backlog is being taken in (a late join, a replay), following the bottom would restyle
    // every row every frame for text nobody can read at that speed: refresh the view ~8 times a
    // second instead, and every frame otherwise.
    const now = performance.now();
    const busy = this.queue.length > 0 && this.follow;
    if (!busy || now - this.lastRender >= BACKLOG_RENDER_MS || !this.lastRender) {
      this.render();
      this.lastRender = now;
    }
    if (this.queue.length || this.searching) this.schedule();
  }

  parseSome(item, t0) {
    if (item.banner != null) {
      this.push({ s: item.step, q: 0, h: item.banner, t: '', c: `banner ${item.kind || ''}` });
      return 1;
    }
    if (item.off == null) item.off = 0;
    let n = 0;
    if (item.cols) {
      while (item.off < item.len) {
        const i = item.off++;
        this.push({ s: item.step, q: item.q[i], h: item.h[i], t: item.t[i], c: item.c[i] });
        n++;
        if ((n & 1023) === 0 && performance.now() - t0 >= BUDGET_MS) break;
      }
      return n;
    }
    let st = this.states.get(item.step);
    if (!st) { st = new AnsiState(); this.states.set(item.step, st); }
    const ls = item.lines;
    while (item.off < ls.length) {
      const r = lineRow(ls[item.off++], st);
      r.s = item.step;
      this.push(r);
      n++;
      if ((n & 127) === 0 && performance.now() - t0 >= BUDGET_MS) break;
    }
    return n;
  }

  push(row) {
    const idx = this.rows.push(row) - 1;
    if (this.vis) { if (row.s !== this.filter) return; this.vis.push(idx); }
    if (this.query && row.t.includes(this.query) && !this.searching) {
      this.matches.push(this.size() - 1);
      this.matchSet.add(row);
    }
  }

  trim(k) {
    const dropped = this.rows.splice(0, k);
    for (const r of dropped) this.matchSet.delete(r);
    const firsts = new Map();
    for (const r of this.rows) if (r.q && !firsts.has(r.s)) firsts.set(r.s, r.q);
    this.firstSeq = firsts;
    let shift = k;
    if (this.vis) {
      const before = this.vis.length;
      this.vis = this.vis.filter((i) => i >= k).map((i) => i - k);
      shift = before - this.vis.length;
    }
    this.matches = this.matches.filter((i) => i >= shift).map((i) => i - shift);
    if (this.cur >= 0) this.cur = Math.max(-1, this.cur - (this.matches.length ? 0 : this.cur + 1));
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
    const count = Math.min(n - first, Math.ceil(s.clientHeight / this.rowH) + 2 * OVERSCAN);
    while (this.pool.length < count) { const d = document.createElement('div'); this.rowsEl.append(d); this.pool.push(d); }
    this.rowsEl.style.transform = `translateY(${first * this.rowH}px)`;
    const curRow = this.cur >= 0 ? this.at(this.matches[this.cur]) : null;
    for (let i = 0; i < this.pool.length; i++) {
      const d = this.pool[i];
      if (i >= count) { if (!d.hidden) { d.hidden = true; d._row = null; } continue; }
      const r = this.at(first + i);
      const mark = r === curRow ? 2 : this.matchSet.has(r) ? 1 : 0;
      if (d._row === r && d._mark === mark && !d.hidden) continue;
      d.hidden = false;
      d._row = r;
      d._mark = mark;
      d.className = `ln ${r.c}${mark === 2 ? ' cur' : mark === 1 ? ' hit' : ''}`;
      d.dataset.seq = r.q;
      d.dataset.step = r.s;
      const no = r.q ? `<span class="no">${r.q}</span>` : '<span class="no"></span>';
      const sp = this.multi ? `<span class="sp">${escapeHTML(this.label(r.s))}</span>` : '';
      d.innerHTML = no + sp + r.h;
    }
    const lines = n.toLocaleString();
    this.info.textContent = `${lines} line${n === 1 ? '' : 's'}${this.queue.length ? ' …' : ''}${this.status ? ` · ${this.status}` : ''}`;
    this.dirty = false;
  }

  // ---- search ----

  setQuery(q, keepPosition = false) {
    this.query = q.toLowerCase();
    this.matches = [];
    this.matchSet = new Set();
    this.cur = -1;
    const gen = ++this.searchGen;
    if (!this.query) { this.searching = false; this.count.textContent = ''; this.dirty = true; this.schedule(); return; }
    this.searching = true;
    this.count.textContent = 'searching…';
    let i = 0;
    const slice = () => {
      if (gen !== this.searchGen) return;
      const t0 = performance.now();
      const n = this.size();
      const qq = this.query;
      while (i < n) {
        const r = this.at(i);
        if (r.t.includes(qq)) { this.matches.push(i); this.matchSet.add(r); }
        i++;
        if ((i & 1023) === 0 && performance.now() - t0 >= BUDGET_MS) break;
      }
      if (i < n) { requestAnimationFrame(slice); return; }
      this.searching = false;
      if (!keepPosition && this.matches.length) {
        // Start at the first match at or below the top of the view.
        const top = Math.floor(this.scroller.scrollTop / this.rowH);
        let k = this.matches.findIndex((m) => m >= top);
        if (k < 0) k = 0;
        this.goto(k);
      } else this.updateCount();
      this.dirty = true;
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
    const pos = this.matches[k];
    const s = this.scroller;
    s.scrollTop = Math.max(0, pos * this.rowH - s.clientHeight / 2);
    this.updateCount();
    this.dirty = true;
    this.schedule();
  }

  // ---- load earlier ----

  async loadEarlier(n = 5000) {
    if (!this.loadEarlierFn || this.multi) return;
    const step = this.rows.find((r) => r.q)?.s;
    if (step == null) return;
    const first = this.firstSeq.get(step) || 1;
    if (first <= 1) { this.earlierBtn.hidden = true; return; }
    this.earlierBtn.disabled = true;
    try {
      const from = Math.max(0, first - 1 - n);
      const lines = await this.loadEarlierFn(step, from, first - 1 - from);
      if (!lines || !lines.length) { this.earlierBtn.textContent = 'Earlier lines unavailable'; return; }
      const st = new AnsiState(); // earlier colour state is unknown; start clean
      const rows = lines.filter((l) => l.seq < first).map((l) => { const r = lineRow(l, st); r.s = step; return r; });
      this.rows.unshift(...rows);
      this.firstSeq.set(step, rows.length ? rows[0].q : first);
      this.matches = this.matches.map((i) => i + rows.length);
      if (this.query) for (let i = rows.length - 1; i >= 0; i--) if (rows[i].t.includes(this.query)) { this.matches.unshift(i); this.matchSet.add(rows[i]); }
      this.scroller.scrollTop += rows.length * this.rowH;
      this.earlierBtn.hidden = (this.firstSeq.get(step) || 1) <= 1;
      this.dirty = true;
      this.render();
    } finally {
      this.earlierBtn.disabled = false;
    }
  }

  /** stats summarizes the model per step (for diagnostics and the UI tests). */
  stats() {
    const steps = {};
    for (const r of this.rows) {
      if (!r.q) continue;
      let s = steps[r.s];
      if (!s) s = steps[r.s] = { count: 0, first: r.q, last: 0, dupes: 0, holes: 0 };
      if (s.last && r.q <= s.last) s.dupes++;
      else if (s.last && r.q > s.last + 1) s.holes += r.q - s.last - 1;
      s.count++;
      s.last = Math.max(s.last, r.q);
    }
    return { rows: this.rows.length, visible: this.size(), queued: this.queue.length - this.qi, steps };
  }
}
