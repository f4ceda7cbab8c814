// ANSI rendering for log lines: SGR colours (16 and 256; truecolour is mapped to the nearest of the
// 256), bold/dim/italic/underline/strike/inverse, `\r` and `\b` overwrites collapsed to the final
// state of the line (tqdm-style progress bars), and KFP LogViewer's error/warn row highlighting.
// A line is parsed once, on arrival, with the SGR state carried over from the step's previous line,
// so a virtualized row renders from its stored HTML without replaying earlier lines.

const CUBE = [0, 95, 135, 175, 215, 255];

function nearest256(r, g, b) {
  const q = (v) => (v < 48 ? 0 : v < 115 ? 1 : Math.min(5, Math.floor((v - 35) / 40)));
  const ci = 16 + 36 * q(r) + 6 * q(g) + q(b);
  const cr = CUBE[q(r)], cg = CUBE[q(g)], cb = CUBE[q(b)];
  const avg = Math.round((r + g + b) / 3);
  const gi = avg > 238 ? 23 : Math.max(0, Math.round((avg - 8) / 10));
  const gv = 8 + 10 * gi;
  const dc = (cr - r) ** 2 + (cg - g) ** 2 + (cb - b) ** 2;
  const dg = (gv - r) ** 2 + (gv - g) ** 2 + (gv - b) ** 2;
  return dg < dc ? 232 + gi : ci;
}

/** AnsiState is the SGR state of one stream of lines (one step). */
export class AnsiState {
  constructor() { this.reset(); }
  reset() { this.c = ''; this.fg = -1; this.bg = -1; this.bd = false; this.dm = false; this.it = false; this.ul = false; this.st = false; this.inv = false; }
  isDefault() { return this.c === ''; }
  /** cls returns the CSS classes of the current state (cached until the next SGR). */
  cls() { return this.c; }
  compute() {
    let fg = this.fg, bg = this.bg;
    if (this.inv) { const t = fg; fg = bg < 0 ? 0 : bg; bg = t < 0 ? 7 : t; }
    let c = '';
    if (fg >= 0) c += ` f${fg}`;
    if (bg >= 0) c += ` b${bg}`;
    if (this.bd) c += ' a-bd';
    if (this.dm) c += ' a-dm';
    if (this.it) c += ' a-it';
    if (this.ul) c += ' a-ul';
    if (this.st) c += ' a-st';
    return c.trim();
  }
  sgr(params) {
    this.apply(params);
    this.c = this.compute();
  }
  apply(params) {
    const p = params === '' ? [0] : params.split(/[;:]/).map((x) => (x === '' ? 0 : parseInt(x, 10)));
    for (let i = 0; i < p.length; i++) {
      const n = p[i];
      if (n === 0) this.reset();
      else if (n === 1) this.bd = true;
      else if (n === 2) this.dm = true;
      else if (n === 3) this.it = true;
      else if (n === 4) this.ul = true;
      else if (n === 7) this.inv = true;
      else if (n === 9) this.st = true;
      else if (n === 21 || n === 22) { this.bd = false; this.dm = false; }
      else if (n === 23) this.it = false;
      else if (n === 24) this.ul = false;
      else if (n === 27) this.inv = false;
      else if (n === 29) this.st = false;
      else if (n >= 30 && n <= 37) this.fg = n - 30;
      else if (n === 39) this.fg = -1;
      else if (n >= 40 && n <= 47) this.bg = n - 40;
      else if (n === 49) this.bg = -1;
      else if (n >= 90 && n <= 97) this.fg = n - 90 + 8;
      else if (n >= 100 && n <= 107) this.bg = n - 100 + 8;
      else if (n === 38 || n === 48) {
        let col = -1;
        if (p[i + 1] === 5 && i + 2 < p.length) { col = p[i + 2] & 255; i += 2; }
        else if (p[i + 1] === 2 && i + 4 < p.length) { col = nearest256(p[i + 2], p[i + 3], p[i + 4]); i += 4; }
        else { i = p.length; }
        if (col >= 0) { if (n === 38) this.fg = col; else this.bg = col; }
      }
    }
  }
}

const ESC_RE = /[&<>]/g;
const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;' };
/** escapeHTML escapes text for an HTML text node. */
export function escapeHTML(s) { return s.replace(ESC_RE, (c) => ESC[c]); }

// eslint-disable-next-line no-control-regex
const SPECIAL = /[\x1b\r\b]/;

/**
 * highlight returns KFP LogViewer's row class for a line's plain text: "err" when the lower-cased
 * text contains "error" or "fail", else "warn" when it contains "warn", else "".
 */
export function highlight(lower) {
  if (lower.includes('error') || lower.includes('fail')) return 'err';
  if (lower.includes('warn')) return 'warn';
  return '';
}

/**
 * renderLine turns one raw line into {html, text}: html for the row (escaped, with spans for SGR
 * classes), text is the plain visible text (for search and highlighting). state is updated.
 */
export function renderLine(raw, state) {
  if (!SPECIAL.test(raw)) {
    const h = escapeHTML(raw);
    return { html: state.isDefault() ? h : `<span class="${state.cls()}">${h}</span>`, text: raw };
  }
  if (!raw.includes('\r') && !raw.includes('\b')) return renderEscapes(raw, state);
  // A cell model: one character and one class per column; \r returns to column 0, \b steps back,
  // so later text overwrites earlier text exactly as a terminal would show it.
  const chars = [];
  const cls = [];
  let col = 0;
  let cur = state.cls();
  const n = raw.length;
  for (let i = 0; i < n; i++) {
    const ch = raw.charCodeAt(i);
    if (ch === 0x1b) {
      const next = raw[i + 1];
      if (next === '[') {
        let j = i + 2;
        while (j < n && !(raw.charCodeAt(j) >= 0x40 && raw.charCodeAt(j) <= 0x7e)) j++;
        const fin = raw[j];
        const params = raw.slice(i + 2, j);
        if (fin === 'm') { state.sgr(params); cur = state.cls(); }
        else if (fin === 'K') {
          const mode = params === '' ? 0 : parseInt(params, 10);
          if (mode === 0) { chars.length = Math.min(chars.length, col); cls.length = chars.length; }
          else if (mode === 2) { chars.length = 0; cls.length = 0; }
        } else if (fin === 'G') { col = Math.max(0, (parseInt(params, 10) || 1) - 1); }
        i = j;
      } else if (next === ']') {
        // OSC (e.g. hyperlinks, titles): skip to BEL or ST.
        let j = i + 2;
        while (j < n && raw.charCodeAt(j) !== 7 && !(raw[j] === '\x1b' && raw[j + 1] === '\\')) j++;
        i = raw.charCodeAt(j) === 7 ? j : j + 1;
      } else {
        i += 1;
      }
      continue;
    }
    if (ch === 0x0d) { col = 0; continue; }
    if (ch === 0x08) { if (col > 0) col--; continue; }
    while (chars.length < col) { chars.push(' '); cls.push(''); }
    chars[col] = raw[i];
    cls[col] = cur;
    col++;
  }
  let html = '';
  let text = '';
  let i = 0;
  while (i < chars.length) {
    const c = cls[i];
    let j = i;
    let seg = '';
    while (j < chars.length && cls[j] === c) { seg += chars[j]; j++; }
    text += seg;
    const e = escapeHTML(seg);
    html += c ? `<span class="${c}">${e}</span>` : e;
    i = j;
  }
  return { html, text };
}

// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b(?:\[([0-9;:?]*)([\x40-\x7e])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.?)/g;

/** renderEscapes is renderLine's fast path for lines without overwrites: spans between escapes. */
function renderEscapes(raw, state) {
  let html = '';
  let text = '';
  let last = 0;
  let cls = state.cls();
  const emit = (seg) => {
    if (!seg) return;
    text += seg;
    const e = escapeHTML(seg);
    html += cls ? `<span class="${cls}">${e}</span>` : e;
  };
  ESCAPES.lastIndex = 0;
  let m;
  while ((m = ESCAPES.exec(raw)) !== null) {
    emit(raw.slice(last, m.index));
    last = ESCAPES.lastIndex;
    if (m[2] === 'm') { state.sgr(m[1]); cls = state.cls(); }
    else if (m[2] === 'K' && (m[1] === '2')) { html = ''; text = ''; }
  }
  emit(raw.slice(last));
  return { html, text };
}

/**
 * lineRow renders one protocol Line into a log row: {q: seq, h: html, t: lower-cased plain text,
 * c: row classes (highlight, stream, partial)}.
 */
export function lineRow(l, state) {
  const { html, text } = renderLine(l.text || '', state);
  const lower = text.toLowerCase();
  let c = highlight(lower);
  if (l.stream === 'stderr') c += ' stderr';
  else if (l.stream === 'system') c += ' system';
  if (l.partial) c += ' partial';
  return { q: l.seq, h: html, t: lower, c };
}
