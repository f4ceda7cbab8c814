// The pipeline DAG as SVG: steps placed in layers by their longest path from a root (left to
// right), edges from parents, each node coloured by its live status. Small pipelines only need
// this simple layout; it is recomputed on every update, which costs microseconds.

const NS = 'http://www.w3.org/2000/svg';
const W = 170, H = 46, GX = 56, GY = 18, PAD = 16;

function svgEl(tag, attrs = {}) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** layout returns {pos: Map(id -> {x, y}), width, height} for steps [{id, parents}]. */
export function layout(steps) {
  const byId = new Map(steps.map((s) => [s.id, s]));
  const layer = new Map();
  const visiting = new Set();
  const depth = (s) => {
    if (layer.has(s.id)) return layer.get(s.id);
    if (visiting.has(s.id)) return 0; // a cycle cannot pass validation; do not loop on one
    visiting.add(s.id);
    let d = 0;
    for (const p of s.parents || []) { const ps = byId.get(p); if (ps) d = Math.max(d, depth(ps) + 1); }
    visiting.delete(s.id);
    layer.set(s.id, d);
    return d;
  };
  steps.forEach(depth);
  const cols = [];
  for (const s of steps) { const d = layer.get(s.id); (cols[d] ||= []).push(s); }
  const pos = new Map();
  let rows = 0;
  cols.forEach((col, x) => {
    // Order a column by the mean row of the parents, to keep edges short.
    col.sort((a, b) => meanRow(a, pos) - meanRow(b, pos));
    col.forEach((s, y) => pos.set(s.id, { x, y }));
    rows = Math.max(rows, col.length);
  });
  return { pos, width: PAD * 2 + cols.length * W + Math.max(0, cols.length - 1) * GX, height: PAD * 2 + rows * H + Math.max(0, rows - 1) * GY };
}

function meanRow(s, pos) {
  const ys = (s.parents || []).map((p) => pos.get(p)).filter(Boolean).map((p) => p.y);
  return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : 0;
}

function clip(text, n) { return text.length > n ? `${text.slice(0, n - 1)}…` : text; }

/**
 * renderDag draws steps into host. onSelect(stepId) is called when a node is clicked; selected is
 * the highlighted step id.
 */
export function renderDag(host, steps, { onSelect, selected } = {}) {
  const { pos, width, height } = layout(steps);
  const svg = svgEl('svg', { class: 'dag', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Pipeline graph' });
  const at = (id) => { const p = pos.get(id); return { x: PAD + p.x * (W + GX), y: PAD + p.y * (H + GY) }; };
  for (const s of steps) {
    for (const p of s.parents || []) {
      if (!pos.has(p)) continue;
      const a = at(p), b = at(s.id);
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      svg.append(svgEl('path', { class: 'edge', d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, 'data-from': p, 'data-to': s.id }));
    }
  }
  for (const s of steps) {
    const { x, y } = at(s.id);
    const status = s.status || 'pending';
    const g = svgEl('g', { class: `node st-${status}${s.id === selected ? ' selected' : ''}`, 'data-step': s.id, 'data-status': status, transform: `translate(${x},${y})`, tabindex: 0 });
    const title = svgEl('title');
    title.textContent = `${s.label || s.id} (${s.file || ''}): ${status}${s.exit_code != null ? `, exit code ${s.exit_code}` : ''}${s.message ? ` — ${s.message}` : ''}`;
    g.append(title, svgEl('rect', { width: W, height: H }));
    const t1 = svgEl('text', { x: 10, y: 19 });
    t1.textContent = clip(s.label || s.id, 22);
    const t2 = svgEl('text', { x: 10, y: 36, class: 'sub' });
    t2.textContent = status + (s.exit_code != null && status !== 'succeeded' ? ` · exit ${s.exit_code}` : '');
    g.append(t1, t2);
    if (onSelect) {
      g.addEventListener('click', () => onSelect(s.id));
      g.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onSelect(s.id); } });
    }
    svg.append(g);
  }
  host.replaceChildren(svg);
  return svg;
}
