// REST helpers. Every URL is relative to the page, so the UI works under any proxy prefix.
// Browsers authenticate with the session cookie; state-changing requests also send the CSRF token
// that GET api/v1/session hands to same-origin pages. A page opened with #token=… (a cross-origin
// embed, where the SameSite=Strict cookie is not sent) uses it as a bearer token instead.

let csrf = null;
let bearer = null;

/** setBearer makes every request carry "Authorization: Bearer <token>". */
export function setBearer(token) { bearer = token || null; }
/** getBearer returns the bearer token set by setBearer, if any. */
export function getBearer() { return bearer; }

/** ApiError is a failed API call; problem is the server's problem+json body when it sent one. */
export class ApiError extends Error {
  constructor(status, message, problem) { super(message); this.status = status; this.problem = problem; }
}

/** baseURL is what relative URLs resolve against: the page, or the worker script (same directory). */
export function baseURL() { return globalThis.document ? document.baseURI : self.location.href; }

/** url resolves a relative API path against the page. */
export function url(path) { return new URL(path, baseURL()).href; }

/** request calls the API and returns the response; non-2xx responses throw ApiError. */
export async function request(method, path, { body, headers = {}, signal } = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (bearer) h.Authorization = `Bearer ${bearer}`;
  if (body !== undefined && !(body instanceof FormData)) { h['Content-Type'] = 'application/json'; body = JSON.stringify(body); }
  if (method !== 'GET' && method !== 'HEAD' && !bearer) {
    if (csrf === null) await session();
    if (csrf) h['X-Kfbridge-CSRF'] = csrf;
  }
  const res = await fetch(url(path), { method, body, headers: h, credentials: 'same-origin', signal });
  if (!res.ok) {
    let problem = null;
    let msg = `${method} ${path}: ${res.status} ${res.statusText}`;
    try { problem = await res.json(); if (problem && problem.detail) msg = problem.detail; } catch { /* not JSON */ }
    throw new ApiError(res.status, msg, problem);
  }
  return res;
}

/** getJSON fetches and decodes a JSON resource. */
export async function getJSON(path, opts) { return (await request('GET', path, opts)).json(); }
/** postJSON posts body and decodes the JSON answer. */
export async function postJSON(path, body, opts) {
  const res = await request('POST', path, { ...opts, body });
  return res.status === 204 ? null : res.json();
}

/** session reports whether the browser is logged in and remembers the CSRF token. */
export async function session() {
  const h = { Accept: 'application/json' };
  if (bearer) h.Authorization = `Bearer ${bearer}`;
  const res = await fetch(url('api/v1/session'), { headers: h, credentials: 'same-origin' });
  if (!res.ok) return { authenticated: false };
  const s = await res.json();
  csrf = s.csrf_token || '';
  return s;
}

/** login exchanges a pasted token for the session cookie. */
export async function login(token) {
  const res = await fetch(url('api/v1/session'), {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ token }),
  });
  if (!res.ok) throw new ApiError(res.status, 'wrong token');
  const s = await res.json();
  csrf = s.csrf_token || '';
  return s;
}

/**
 * fetchLog reads lines of a step over REST: up to limit lines with seq > afterSeq, as Line objects.
 * It returns null when the server has no such endpoint (older servers).
 */
export async function fetchLog(run, step, afterSeq, limit) {
  const q = new URLSearchParams({ after_seq: String(afterSeq), limit: String(limit) });
  const p = `api/v1/runs/${encodeURIComponent(run)}/steps/${encodeURIComponent(step)}/log?${q}`;
  let res;
  try {
    res = await request('GET', p, { headers: { Accept: 'application/x-ndjson' } });
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 405)) return null;
    throw e;
  }
  const text = await res.text();
  const out = [];
  for (const l of text.split('\n')) if (l.trim()) out.push(JSON.parse(l));
  return out;
}

/** fmtDuration formats milliseconds as 1h02m, 3m04s or 5.2s. */
export function fmtDuration(ms) {
  if (ms == null || Number.isNaN(ms)) return '';
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** fmtTime formats an RFC 3339 time for display in the browser's locale. */
export function fmtTime(t) {
  if (!t) return '';
  const d = new Date(t);
  return d.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** fmtBytes formats a byte count. */
export function fmtBytes(n) {
  if (n == null) return '';
  if (n < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${u[i]}`;
}

/** el builds a DOM element: el('a', {href: 'x', class: 'y'}, 'text', child…). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c != null && c !== false) e.append(c instanceof Node ? c : String(c));
  return e;
}

/** terminal reports whether a run or step status is final. */
export function terminal(status) {
  return status === 'succeeded' || status === 'failed' || status === 'cancelled' || status === 'skipped';
}
