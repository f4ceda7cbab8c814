// Package uitest drives the real kfbridge server and its web UI with headless Chromium (chromedp):
// submit from the UI, live logs and DAG status, failing steps, ANSI/highlight styles, a websocket
// dropped mid-run, a 100,000-line log, all both at the server root and behind a reverse proxy that
// mounts kfbridge under /user/alice/proxy/8765/ as jupyter-server-proxy does.
//
// Chromium (/usr/bin/chromium or $KFBRIDGE_CHROMIUM) and python3 are needed; the tests skip without
// them, except under CI=true where they fail. Screenshots go to $KFBRIDGE_ARTIFACTS (or a temp dir).
package uitest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/kfbridge/kfbridge/server"
)

// TestMain lets this test binary double as the step runner: the local runtime starts
// "<binary> step …" through a tiny wrapper script, so no separate build is needed.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "step" {
		os.Exit(server.Run(context.Background(), os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// need skips the test when a component is missing, or fails it under CI=true.
func need(t *testing.T, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true", what)
	}
	t.Skipf("%s not available", what)
}

func chromiumPath() string {
	if p := os.Getenv("KFBRIDGE_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// Scripts of the test workspace, besides examples/hello.
const (
	failPy = `import sys
print("\x1b[31mred text\x1b[0m plain \x1b[1mbold\x1b[0m \x1b[38;5;208morange256\x1b[0m")
print("WARNING: careful with that")
print("progress 10%\rprogress 50%\rprogress 100%")
print("ERROR: something broke", file=sys.stderr)
print("almost done")
sys.exit(3)
`
	slowPy = `import time
for i in range(1, 301):
    print(f"line {i:04d}", flush=True)
    time.sleep(0.01)
`
	bigPy = `import sys
w = sys.stdout.write
for i in range(1, 100001):
    w(f"line {i:06d} \x1b[32mok\x1b[0m some payload text to make the line longer {i * 7}\n")
`
)

// env is one kfbridge server with its workspace, plus the browser.
type env struct {
	srvURL, token   string
	bigRun, bigStep string // the 100,000-line run, once testBigLog made it
	artifacts       string
	browser         context.Context
}

func setup(t *testing.T) *env {
	t.Helper()
	_, err := os.Stat(chromiumPath())
	need(t, "chromium", err == nil)
	_, err = exec.LookPath("python3")
	need(t, "python3", err == nil)

	tmp := t.TempDir()
	ws := filepath.Join(tmp, "workspace")
	copyDir(t, filepath.Join("..", "..", "examples", "hello"), ws)
	for name, body := range map[string]string{"fail.py": failPy, "slow.py": slowPy, "big.py": bigPy} {
		if err := os.WriteFile(filepath.Join(ws, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := filepath.Join(tmp, "kfbridge-step")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec '"+self+"' step \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var logs bytes.Buffer
	var logMu sync.Mutex
	done := make(chan int, 1)
	go func() {
		code := server.Run(ctx, []string{"kfbridge", "serve", "--addr", "127.0.0.1:0", "--workspace", ws,
			"--data-dir", filepath.Join(tmp, "data"), "--step-binary", wrapper},
			func(string) string { return "" }, nil, pw, lockedWriter{&logMu, &logs})
		pw.Close()
		done <- code
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("server did not stop")
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("server log:\n%s", logs.String())
			logMu.Unlock()
		}
	})
	e := &env{}
	found := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		re := regexp.MustCompile(`(http://\S+)/\?token=(\S+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil && e.token == "" {
				e.srvURL, e.token = m[1], m[2]
				close(found)
			}
		}
	}()
	select {
	case <-found:
	case code := <-done:
		t.Fatalf("server exited with %d: %s", code, logs.String())
	case <-time.After(15 * time.Second):
		t.Fatal("server did not print its URL")
	}

	e.artifacts = os.Getenv("KFBRIDGE_ARTIFACTS")
	if e.artifacts == "" {
		e.artifacts = filepath.Join(tmp, "artifacts")
	}
	if err := os.MkdirAll(e.artifacts, 0o755); err != nil {
		t.Fatal(err)
	}

	// Chromium writes under HOME and TMPDIR even with a user data dir: keep all of it in the test's
	// temp dir.
	home := filepath.Join(tmp, "home")
	os.MkdirAll(home, 0o700)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath()),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(filepath.Join(tmp, "chromium")), chromedp.WindowSize(1280, 800),
		chromedp.Env("HOME="+home, "TMPDIR="+home))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil {
		acancel()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() { bcancel(); acancel() })
	e.browser = bctx
	return e
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// proxy is a reverse proxy in front of the server, mounted at prefix like jupyter-server-proxy
// (absolute_url false: the prefix is stripped). cut closes every proxied websocket, as a network
// drop would.
type proxy struct {
	base string // URL of the mount point, ending in "/"
	mu   sync.Mutex
	ws   map[net.Conn]bool
}

func newProxy(t *testing.T, target, prefix string) *proxy {
	t.Helper()
	tu, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ws: map[net.Conn]bool{}}
	mount := strings.TrimSuffix(prefix, "/")
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(tu)
			r.Out.URL.Path = "/" + strings.TrimPrefix(strings.TrimPrefix(r.In.URL.Path, mount), "/")
			r.Out.URL.RawPath = ""
			r.Out.Host = r.In.Host // jupyter-server-proxy keeps the browser's Host
			r.SetXForwarded()
		},
		FlushInterval: -1,
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mount != "" && r.URL.Path == mount {
			http.Redirect(w, r, mount+"/", http.StatusMovedPermanently)
			return
		}
		if !strings.HasPrefix(r.URL.Path, mount+"/") {
			http.NotFound(w, r)
			return
		}
		rp.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ConnState: func(c net.Conn, s http.ConnState) {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch s {
		case http.StateHijacked:
			p.ws[c] = true
		case http.StateClosed:
			delete(p.ws, c)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); p.cut() })
	p.base = "http://" + ln.Addr().String() + mount + "/"
	return p
}

// cut closes every websocket going through the proxy and reports how many there were.
func (p *proxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.ws)
	for c := range p.ws {
		c.Close()
		delete(p.ws, c)
	}
	return n
}

// submit starts a run over the REST API (what the CLI and notebooks do) and returns it.
func (e *env) submit(t *testing.T, path string) (id string, steps []string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"path": path})
	req, _ := http.NewRequest(http.MethodPost, e.srvURL+"/api/v1/runs", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var run struct {
		ID    string `json:"id"`
		Steps []struct {
			ID string `json:"id"`
		} `json:"steps"`
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("submit %s: %d %s", path, res.StatusCode, b)
	}
	if err := json.Unmarshal(b, &run); err != nil {
		t.Fatal(err)
	}
	for _, s := range run.Steps {
		steps = append(steps, s.ID)
	}
	return run.ID, steps
}

// waitRun polls the run over REST until it has ended.
func (e *env) waitRun(t *testing.T, id string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequest(http.MethodGet, e.srvURL+"/api/v1/runs/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+e.token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var run struct {
			Status string `json:"status"`
		}
		err = json.NewDecoder(res.Body).Decode(&run)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		switch run.Status {
		case "succeeded", "failed", "cancelled":
			return run.Status
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %s after %v", id, run.Status, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tab is one browser tab in its own browser context (own cookies).
type tab struct {
	t   *testing.T
	ctx context.Context
	e   *env
}

func (e *env) newTab(t *testing.T, isolated bool) *tab {
	t.Helper()
	var opts []chromedp.ContextOption
	if isolated {
		opts = append(opts, chromedp.WithNewBrowserContext())
	}
	ctx, cancel := chromedp.NewContext(e.browser, opts...)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	return &tab{t: t, ctx: ctx, e: e}
}

func (b *tab) do(a ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, a...); err != nil {
		b.fail("%v", err)
	}
}

// nav loads u as a new document (via about:blank, so a URL that differs only in its fragment is
// still a fresh page load).
func (b *tab) nav(u string) {
	b.t.Helper()
	b.do(chromedp.Navigate("about:blank"), chromedp.Navigate(u))
}

// js evaluates expr (awaiting a promise) and decodes its value into T.
func js[T any](b *tab, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.fail("evaluate %s: %v", expr, err)
	}
	return v
}

// wait polls expr until it is truthy.
func (b *tab) wait(what, expr string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	// An expression that throws (the page is still starting) counts as not yet true.
	guarded := `(() => { try { return (` + expr + `); } catch (e) { return false; } })()`
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](guarded, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		b.fail("waiting for %s (%s): %v", what, expr, err)
	}
}

// fail takes a screenshot and dumps the page state before failing.
func (b *tab) fail(format string, a ...any) {
	b.t.Helper()
	b.shot("FAILED-" + strings.NewReplacer("/", "-", " ", "_").Replace(b.t.Name()))
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({url: location.href,
		stats: window.kfbridge && window.kfbridge.logView && window.kfbridge.logView.stats(),
		stream: window.kfbridge && window.kfbridge.stream && {mode: window.kfbridge.stream.mode, reconnects: window.kfbridge.stream.reconnects, done: window.kfbridge.stream.done},
		text: document.body.innerText.slice(0, 3000)})`))
	b.t.Fatalf(format+"\npage: %s", append(a, state)...)
}

// shot saves a PNG screenshot of the tab as a test artifact.
func (b *tab) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(b.e.artifacts, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.t.Logf("screenshot: %s", p)
}

func TestUI(t *testing.T) {
	e := setup(t)
	root := newProxy(t, e.srvURL, "/")
	jupyter := newProxy(t, e.srvURL, "/user/alice/proxy/8765/")

	// The UI straight from the server: login by ?token= sets the cookie and drops the token.
	t.Run("direct-login", func(t *testing.T) {
		b := e.newTab(t, true)
		b.nav(e.srvURL + "/?token=" + e.token)
		b.wait("runs page", `document.querySelector('table.runs') !== null`, 10*time.Second)
		loc := js[string](b, `location.href`)
		if strings.Contains(loc, "token") || !strings.HasPrefix(loc, e.srvURL+"/") {
			t.Fatalf("after login the address is %q, want the server root without the token", loc)
		}
		if c := js[string](b, `document.cookie`); strings.Contains(c, "kfbridge-session") {
			t.Fatalf("the session cookie is readable from JavaScript: %q", c)
		}
	})

	for _, m := range []struct {
		name string
		p    *proxy
	}{{"root", root}, {"jupyter-server-proxy", jupyter}} {
		t.Run(m.name, func(t *testing.T) {
			b := e.newTab(t, true)
			name := strings.ReplaceAll(m.name, "-", "_")
			// Not logged in yet: the page asks for the token instead of showing data.
			b.nav(m.p.base)
			b.wait("login form", `document.querySelector('#token') !== null`, 10*time.Second)
			b.nav(m.p.base + "?token=" + e.token)
			b.wait("runs page", `document.querySelector('table.runs') !== null`, 10*time.Second)
			if loc := js[string](b, `location.href`); loc != m.p.base && loc != m.p.base+"#/runs" {
				t.Fatalf("after login the address is %q, want %q", loc, m.p.base)
			}
			t.Run("submit-hello", func(t *testing.T) { testSubmitHello(t, b, m.p.base, name) })
			t.Run("failing-step-styles", func(t *testing.T) { testFailing(t, b, m.p.base, name) })
			t.Run("cancel", func(t *testing.T) { testCancel(t, b, m.p.base, name) })
			// The standalone panel of one step at the root, the run page with every step behind the
			// prefix: both resume after the drop.
			page := "panel.html#run=%s&step=%s"
			if m.name != "root" {
				page = "#/runs/%s"
			}
			t.Run("websocket-drop", func(t *testing.T) { testDrop(t, b, m.p, page, name) })
			t.Run("big-log", func(t *testing.T) { testBigLog(t, b, m.p, name) })
			if m.name == "root" {
				t.Run("js-units", func(t *testing.T) { testJSUnits(t, b, m.p.base) })
			}
			t.Run("panel-token-embed", func(t *testing.T) { testPanelToken(t, e, m.p.base, name) })
		})
	}
}

func testSubmitHello(t *testing.T, b *tab, base, name string) {
	b.t = t
	b.nav(base + "#/submit")
	b.wait("file list", `document.querySelector('button[data-path="hello.pipeline"]') !== null`, 10*time.Second)
	b.do(chromedp.Click(chromedp.CSS(`button[data-path="hello.pipeline"]`)))
	b.wait("submit enabled", `!document.querySelector('#submit').disabled`, 5*time.Second)
	b.wait("validation", `(document.querySelector('#validation') || {}).textContent === '✓ pipeline is valid'`, 10*time.Second)
	b.shot(name + "-submit")
	b.do(chromedp.Click(chromedp.CSS(`#submit`)))
	b.wait("run page", `location.hash.startsWith('#/runs/') && document.querySelector('#dag svg') !== null`, 10*time.Second)

	// Lines appear while the steps are still running.
	b.wait("live lines while running", `(() => {
		const s = window.kfbridge.logView.stats();
		const running = document.querySelector('#dag .node[data-status="running"]');
		return running && Object.values(s.steps).some(x => x.count > 0) ? (window.__sawLive = true) : false;
	})()`, 20*time.Second)
	b.wait("every step green", `[...document.querySelectorAll('#dag .node')].length === 3 &&
		[...document.querySelectorAll('#dag .node')].every(n => n.dataset.status === 'succeeded')`, 30*time.Second)
	fill := js[[]string](b, `[...document.querySelectorAll('#dag .node rect')].map(r => getComputedStyle(r).fill)`)
	for _, f := range fill {
		if f != "rgb(45, 164, 78)" {
			t.Fatalf("succeeded node fill = %q, want green rgb(45, 164, 78)", f)
		}
	}
	b.wait("run succeeded", `document.querySelector('#run-status [data-status]').dataset.status === 'succeeded'`, 10*time.Second)
	// Packaging and upload progress of every node came as progress events.
	b.wait("packaging progress", `[...document.querySelectorAll('#progress .progress')].filter(p => ['done', 'deduplicated'].includes(p.dataset.phase)).length === 3`, 5*time.Second)
	b.wait("all lines", `window.kfbridge.logView.countMatching('sum = 15') === 1 &&
		window.kfbridge.logView.grep('finished: exit code 0').filter(r => r.c.includes('banner')).length === 3`, 10*time.Second)
	b.shot(name + "-run")
	// The artifacts link is the run's object_storage_url (a KFP run would also link its run_url).
	if ok := js[bool](b, `(async () => { const id = decodeURIComponent(location.hash.split('/')[2].split('?')[0]);
		const run = await (await fetch('api/v1/runs/' + encodeURIComponent(id))).json();
		const a = document.querySelector('#artifacts-link');
		return !!run.object_storage_url && !!a && a.href === run.object_storage_url && !document.querySelector('#kfp-link') === !run.run_url; })()`); !ok {
		b.fail("the artifacts/KFP links do not match the run's object_storage_url/run_url")
	}

	// Selecting a step filters the log to that step.
	b.do(chromedp.Click(chromedp.CSS(`#step-tabs button:nth-child(2)`)))
	b.wait("filtered log", `(() => { const v = window.kfbridge.logView; return v.filter && v.size() > 0 && v.size() < v.countRows(); })()`, 5*time.Second)

	b.nav(base + "#/runs")
	b.wait("runs list", `[...document.querySelectorAll('table.runs tbody tr')].some(r => r.textContent.includes('succeeded'))`, 10*time.Second)
	b.shot(name + "-runs")
}

func testFailing(t *testing.T, b *tab, base, name string) {
	b.t = t
	id, steps := b.e.submit(t, "fail.py")
	b.nav(base + "#/runs/" + id)
	b.wait("step failed", `document.querySelector('#dag .node[data-status="failed"]') !== null`, 20*time.Second)
	b.wait("run failed", `document.querySelector('#run-status [data-status]').dataset.status === 'failed'`, 10*time.Second)
	if f := js[string](b, `getComputedStyle(document.querySelector('#dag .node[data-status="failed"] rect')).fill`); f != "rgb(207, 34, 46)" {
		t.Fatalf("failed node fill = %q, want red", f)
	}
	b.wait("exit code on the node", `document.querySelector('#dag .node[data-status="failed"]').textContent.includes('exit 3')`, 5*time.Second)
	b.wait("exit banner", `[...document.querySelectorAll('.ln.banner.fail')].some(d => d.textContent.includes('exit code 3'))`, 10*time.Second)
	type style struct{ Bg, Color, Weight, Text string }
	get := func(expr string) style {
		return js[style](b, `(() => { const d = `+expr+`; if (!d) return {}; const s = getComputedStyle(d);
			return {Bg: s.backgroundColor, Color: s.color, Weight: s.fontWeight, Text: d.textContent}; })()`)
	}
	row := func(text string) string {
		return `[...document.querySelectorAll('.ln')].find(d => d.textContent.includes(` + jsString(text) + `))`
	}
	if s := get(row("ERROR: something broke")); s.Bg != "rgb(112, 0, 0)" || s.Color != "rgb(255, 255, 255)" {
		t.Errorf("error line style = %+v, want background #700000 and white text", s)
	}
	if s := get(row("WARNING: careful")); s.Bg != "rgb(84, 84, 0)" || s.Color != "rgb(255, 255, 255)" {
		t.Errorf("warn line style = %+v, want background #545400 and white text", s)
	}
	if s := get(row("almost done")); s.Bg == "rgb(112, 0, 0)" || s.Bg == "rgb(84, 84, 0)" {
		t.Errorf("plain line is highlighted: %+v", s)
	}
	redRow := row("red text")
	if s := get(`[...` + redRow + `.querySelectorAll('span')].find(x => x.textContent === 'red text')`); s.Color != "rgb(205, 49, 49)" {
		t.Errorf("SGR 31 span = %+v, want colour rgb(205, 49, 49)", s)
	}
	if s := get(`[...` + redRow + `.querySelectorAll('span')].find(x => x.textContent === 'bold')`); s.Weight != "700" {
		t.Errorf("SGR 1 span = %+v, want font-weight 700", s)
	}
	if s := get(`[...` + redRow + `.querySelectorAll('span')].find(x => x.textContent === 'orange256')`); s.Color != "rgb(255, 135, 0)" {
		t.Errorf("SGR 38;5;208 span = %+v, want rgb(255, 135, 0)", s)
	}
	if s := get(row("progress")); !strings.HasSuffix(s.Text, "progress 100%") || strings.Contains(s.Text, "50%") {
		t.Errorf("\\r progress line renders as %q, want only its final state \"progress 100%%\"", s.Text)
	}
	b.shot(name + "-failed-run")

	// The standalone panel of the failed step.
	b.nav(base + "panel.html#run=" + id + "&step=" + steps[0])
	b.wait("panel banner", `[...document.querySelectorAll('.ln.banner.fail')].some(d => d.textContent.includes('exit code 3'))`, 10*time.Second)
	b.wait("panel status", `document.querySelector('#panel-status').dataset.status === 'failed'`, 5*time.Second)
	b.shot(name + "-panel-failed")

	// Embedded in a frame, as IPython.display.IFrame puts it in a notebook output (same origin
	// through the proxy): the panel loads and follows the step.
	b.nav(base)
	b.wait("app", `document.querySelector('table.runs') !== null`, 10*time.Second)
	b.do(chromedp.Evaluate[chromedp.Void](`(() => { const f = document.createElement('iframe'); f.id = 'embed'; f.width = 900; f.height = 300;
		f.src = 'panel.html#run=` + id + `&step=` + steps[0] + `'; document.body.prepend(f); })()`))
	b.wait("panel in a frame", `(() => { const w = document.getElementById('embed').contentWindow;
		return w.kfbridge && w.kfbridge.logView && w.kfbridge.logView.countMatching('almost done') === 1; })()`, 15*time.Second)
	b.shot(name + "-panel-in-iframe")
}

func testCancel(t *testing.T, b *tab, base, name string) {
	b.t = t
	id, _ := b.e.submit(t, "slow.py")
	b.nav(base + "#/runs/" + id)
	b.wait("running with lines", `document.querySelector('#dag .node[data-status="running"]') !== null && window.kfbridge.logView.countMatching('line 0') > 0`, 20*time.Second)
	b.do(chromedp.Click(chromedp.CSS(`#cancel`)))
	b.wait("run cancelled", `document.querySelector('#run-status [data-status]').dataset.status === 'cancelled'`, 15*time.Second)
	b.nav(base + "#/runs")
	b.wait("cancelled in the list", `[...document.querySelectorAll('table.runs tbody tr')].some(r => r.dataset.run === `+jsString(id)+` && r.textContent.includes('cancelled') && !r.querySelector('button.cancel'))`, 10*time.Second)
	if st := b.e.waitRun(t, id, 10*time.Second); st != "cancelled" {
		t.Fatalf("run %s ended %s, want cancelled", id, st)
	}
}

func jsString(s string) string { b, _ := json.Marshal(s); return string(b) }

func testDrop(t *testing.T, b *tab, p *proxy, page, name string) {
	b.t = t
	id, steps := b.e.submit(t, "slow.py")
	if strings.Count(page, "%s") == 2 {
		page = fmt.Sprintf(page, id, steps[0])
	} else {
		page = fmt.Sprintf(page, id)
	}
	// Hijacked connections never report StateClosed: forget earlier pages' sockets, so the count
	// below is this page's.
	p.cut()
	b.nav(p.base + page)
	b.wait("first lines", `window.kfbridge.logView.grep('line ', 1e6).filter(r => /^line \d{4}$/.test(r.t)).length >= 40`, 20*time.Second)
	// Follow mode: pinned to the bottom while lines arrive; scrolling up unpins it and new lines do
	// not move the view; the Follow button pins it again.
	pinned := `(() => { const v = window.kfbridge.logView, s = v.scroller; return v.follow && v.followBtn.classList.contains('on') &&
		s.scrollHeight > s.clientHeight && s.scrollTop + s.clientHeight >= s.scrollHeight - 20; })()`
	b.wait("pinned to the bottom", pinned, 5*time.Second)
	n0 := js[int](b, `(() => { const v = window.kfbridge.logView; v.scroller.scrollTop = 0; return v.countRows(); })()`)
	b.wait("unpinned by scrolling up", `!window.kfbridge.logView.follow`, 5*time.Second)
	b.wait("more lines while unpinned", `window.kfbridge.logView.countRows() >= `+fmt.Sprint(n0+15)+` && window.kfbridge.logView.scroller.scrollTop === 0`, 10*time.Second)
	b.do(chromedp.Click(chromedp.CSS(`.log-bar .follow`)))
	b.wait("pinned again", pinned, 5*time.Second)
	if js[bool](b, `window.kfbridge.stream.done`) {
		t.Fatal("the step ended before the connection could be cut; make slow.py slower")
	}
	cuts := 0
	for i := 0; i < 2; i++ {
		n := p.cut()
		if n == 0 && i == 0 {
			t.Fatal("no websocket went through the proxy to cut")
		}
		cuts += n
		time.Sleep(400 * time.Millisecond)
	}
	b.wait("step end after reconnect", `window.kfbridge.stream.done && window.kfbridge.logView.stats().queued === 0 &&
		document.querySelector('.ln.banner') !== null`, 30*time.Second)
	type res struct {
		Reconnects, Lines, Distinct, Dupes, Holes, First int
		Mode                                             string
	}
	r := js[res](b, `(() => {
		const v = window.kfbridge.logView, st = Object.values(v.stats().steps)[0] || {};
		const user = v.grep('line ', 1e6).filter(r => /^line \d{4}$/.test(r.t)).map(r => r.t);
		return {Mode: window.kfbridge.stream.mode, Reconnects: window.kfbridge.stream.reconnects, Lines: user.length, Distinct: new Set(user).size,
			Dupes: st.dupes, Holes: st.holes, First: st.first};
	})()`)
	t.Logf("websocket drop: %d connections cut, %d reconnects, %+v", cuts, r.Reconnects, r)
	if r.Reconnects < 1 {
		t.Fatalf("the panel never reconnected: %+v", r)
	}
	if r.Lines != 300 || r.Distinct != 300 || r.Dupes != 0 || r.Holes != 0 || r.First != 1 {
		t.Fatalf("after the drop the panel holds %+v, want the 300 user lines exactly once and seq 1.. with no hole or duplicate", r)
	}
	b.shot(name + "-panel-after-drop")
}

// longTaskObserver records long tasks, and long animation frames with their script attribution (to
// tell our code from style/layout or a descheduled thread when a measurement fails).
const longTaskObserver = `
window.__longtasks = [];
window.__loaf = [];
try {
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__longtasks.push({start: e.startTime, dur: e.duration}); })
    .observe({type: 'longtask', buffered: true});
} catch (e) { window.__longtaskError = String(e); }
try {
  new PerformanceObserver((l) => { for (const e of l.getEntries()) if (e.duration > 50) window.__loaf.push({start: Math.round(e.startTime),
      dur: Math.round(e.duration), styleLayout: Math.round(e.styleAndLayoutStart ? e.startTime + e.duration - e.styleAndLayoutStart : 0),
      scripts: e.scripts.map(s => s.invoker + ' ' + Math.round(s.duration) + 'ms')}); })
    .observe({type: 'long-animation-frame', buffered: true});
} catch (e) { /* attribution is optional */ }
`

func testBigLog(t *testing.T, b *tab, p *proxy, name string) {
	b.t = t
	id, steps := b.e.submit(t, "big.py")
	b.e.bigRun, b.e.bigStep = id, steps[0]
	// Let the run finish first: on a small CI machine the step, the runner and the server compete with
	// the browser for the CPU while the lines are produced, and a long task is wall-clock time. The
	// live path is covered by the other tests; this one measures the viewer.
	b.e.waitRun(t, id, 30*time.Second)
	var scriptID page.ScriptIdentifier
	b.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		res, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: longTaskObserver})
		scriptID = res.Identifier
		return err
	}))
	defer b.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.RemoveScriptToEvaluateOnNewDocument, page.RemoveScriptToEvaluateOnNewDocumentParams{Identifier: scriptID})
		return err
	}))
	// A long task is wall-clock time, and a shared machine can deschedule the browser for tens of
	// milliseconds at any moment. A design flaw (parsing or rendering 100,000 lines in one task)
	// shows in every attempt; a noisy neighbour does not, so up to three attempts are made.
	var attempts []string
	for attempt := 1; attempt <= 3; attempt++ {
		over, report := bigLogAttempt(t, b, p.base+"panel.html#run="+id+"&step="+steps[0], fmt.Sprintf("%s-panel-100k-%d", name, attempt))
		t.Logf("attempt %d: %s", attempt, report)
		if over == 0 {
			return
		}
		attempts = append(attempts, report)
	}
	// A machine with more runnable threads than CPUs (other test binaries, builds) stretches any
	// task: there the budget cannot be told apart from the neighbours and is reported, not enforced.
	// On a machine that is not overloaded it is enforced.
	if load, cpus := loadAvg(), runtime.NumCPU(); load > float64(cpus) {
		t.Logf("NOT ENFORCED: load average %.1f on %d CPUs; long tasks over 50 ms in every attempt:\n%s", load, cpus, strings.Join(attempts, "\n"))
		return
	}
	t.Fatalf("main-thread long tasks over 50 ms after first paint in every attempt:\n%s", strings.Join(attempts, "\n"))
}

// loadAvg returns the 1-minute load average (0 if unknown).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	fmt.Sscan(string(b), &l)
	return l
}

// bigLogAttempt opens the panel on the 100,000-line step, checks that every line is there, that
// scrolling and search work, and returns the long tasks over 50 ms after first paint.
func bigLogAttempt(t *testing.T, b *tab, u, shot string) (int, string) {
	start := time.Now()
	b.nav(u)
	// A cheap predicate: the poll itself runs on the page's main thread.
	b.wait("100,000 lines", `window.kfbridge.stream.done && window.kfbridge.logView.queue.length === 0 &&
		window.kfbridge.logView.countRows() >= 100000`, 45*time.Second)
	loaded := time.Since(start)
	// Scroll to the middle: the rows there are rendered.
	got := js[string](b, `new Promise(res => { const v = window.kfbridge.logView; const s = v.scroller;
		const i = v.grep('line 050000 ', 1)[0].i;
		s.scrollTop = i * v.rowH; requestAnimationFrame(() => requestAnimationFrame(() => {
			const rows = [...document.querySelectorAll('.log-rows .ln:not([hidden])')];
			const top = s.getBoundingClientRect().top;
			const first = rows.find(d => d.getBoundingClientRect().bottom > top + 1);
			res(first ? first.textContent : ''); })); })`)
	if !strings.Contains(got, "line 050000 ") {
		b.fail("after scrolling to line 50000 the first visible row is %q", got)
	}
	// Search jumps to a line far away and marks it.
	b.do(chromedp.SetValue(chromedp.CSS(`.log-search`), "line 077777 "))
	b.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('.log-search').dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter'}))`))
	b.wait("search hit", `document.querySelector('.log-bar .count').textContent === '1/1' &&
		[...document.querySelectorAll('.ln.cur')].some(d => d.textContent.includes('line 077777 ') &&
			d.getBoundingClientRect().top >= document.querySelector('.log-scroll').getBoundingClientRect().top &&
			d.getBoundingClientRect().bottom <= document.querySelector('.log-scroll').getBoundingClientRect().bottom)`, 10*time.Second)
	b.shot(shot)
	type lt struct{ Start, Dur float64 }
	res := js[struct {
		FirstPaint float64
		Tasks      []lt
		Frames     any
		Err        string
	}](b, `({FirstPaint: (performance.getEntriesByName('first-paint')[0] || {startTime: 0}).startTime,
		Tasks: window.__longtasks || [], Frames: window.__loaf || [], Err: window.__longtaskError || ''})`)
	if res.Err != "" {
		b.fail("no longtask observer: %s", res.Err)
	}
	// The REST client behind gap filling and "Load earlier" reads a range of the step's log.
	if got := js[[]string](b, `window.kfbridge.fetchLog(new URLSearchParams(location.hash.slice(1)).get('run'),
		new URLSearchParams(location.hash.slice(1)).get('step'), window.kfbridge.logView.grep('line 050000 ', 1)[0].q - 1, 3)
		.then(ls => ls ? ls.map(l => l.text.slice(0, 12)) : ['no REST log endpoint'])`); len(got) != 3 || got[0] != "line 050000 " || got[2] != "line 050002 " {
		b.fail("REST log range = %q, want lines 50000..50002", got)
	}
	type model struct{ Lines, Dupes, Holes int }
	if m := js[model](b, `(() => { const v = window.kfbridge.logView; const st = Object.values(v.stats().steps)[0];
		return {Lines: v.countMatching('some payload text'), Dupes: st.dupes, Holes: st.holes}; })()`); m.Lines != 100000 || m.Dupes != 0 || m.Holes != 0 {
		b.fail("the panel holds %+v, want 100000 user lines, no duplicate, no hole", m)
	}
	// Drop the oldest rows as the view does past its cap, then "Load earlier" brings back the 5,000
	// lines before the first one held, over REST, with nothing missing or doubled.
	type earlier struct {
		Before, After, Rows int
		Dupes, Holes        int
		Button              bool
	}
	e := js[earlier](b, `(async () => { const v = window.kfbridge.logView;
		v.trim(60000); v.render();
		const before = Object.values(v.stats().steps)[0].first, button = !v.earlierBtn.hidden;
		await v.loadEarlier();
		const st = Object.values(v.stats().steps)[0];
		return {Before: before, After: st.first, Rows: st.count, Dupes: st.dupes, Holes: st.holes, Button: button}; })()`)
	if !e.Button || e.Before <= 5001 || e.After != e.Before-5000 || e.Dupes != 0 || e.Holes != 0 {
		b.fail("load earlier: %+v, want the button shown and 5000 more lines before the first, contiguous", e)
	}
	var over []lt
	for _, x := range res.Tasks {
		if x.Start > res.FirstPaint && x.Dur > 50 {
			over = append(over, x)
		}
	}
	frames, _ := json.Marshal(res.Frames)
	return len(over), fmt.Sprintf("100,000 lines loaded, rendered, scrolled and searched in %v; first paint %.0f ms; long tasks over 50 ms after first paint: %v (long frames: %s)",
		loaded.Round(time.Millisecond), res.FirstPaint, over, frames)
}

// jsUnits exercises the UI's modules in the browser: ANSI rendering edge cases, the chunk store, and
// LogStream's ordering rules (duplicates dropped, a hole filled over REST from the real server
// before later lines are passed on). It resolves to a list of failures.
const jsUnits = `(async (run, step, bigRun, bigStep) => {
  const fails = [];
  const eq = (what, got, want) => { if (JSON.stringify(got) !== JSON.stringify(want)) fails.push(what + ': got ' + JSON.stringify(got) + ', want ' + JSON.stringify(want)); };
  const { renderLine, AnsiState, highlight, lineRow } = await import('./ansi.js');
  const { makeChunk, field, rowAt } = await import('./chunk.js');
  const { LogStream } = await import('./stream.js');
  let st = new AnsiState();
  eq('escape', renderLine('a<b>&c', st), {html: 'a&lt;b&gt;&amp;c', text: 'a<b>&c'});
  eq('sgr carried to the next line', [renderLine('\x1b[1;31mx', st).html, renderLine('y', st).html, renderLine('\x1b[0mz', st).html],
     ['<span class="f1 a-bd">x</span>', '<span class="f1 a-bd">y</span>', 'z']);
  st = new AnsiState();
  eq('bright and 256 bg', renderLine('\x1b[92;48;5;17mq', st).html, '<span class="f10 b17">q</span>');
  st = new AnsiState();
  eq('truecolour to nearest 256', renderLine('\x1b[38;2;255;135;0mo', st).html, '<span class="f208">o</span>');
  st = new AnsiState();
  eq('\\r collapse', renderLine(' 10%|#   |\r 50%|##  |\r100%|####|', st).text, '100%|####|');
  eq('\\r shorter overwrite keeps the tail', renderLine('abcdef\rXY', st).text, 'XYcdef');
  eq('\\r then erase line', renderLine('abcdef\r\x1b[KXY', st).text, 'XY');
  eq('CRLF', renderLine('done\r', st).text, 'done');
  eq('backspace', renderLine('ab\bX', st).text, 'aX');
  eq('OSC hyperlink dropped', renderLine('\x1b]8;;http://x\x07link\x1b]8;;\x07!', st).text, 'link!');
  eq('highlight', ['An ERROR', 'Failed x', 'warning', 'WARN and error', 'fine'].map(x => highlight(x.toLowerCase())), ['err', 'err', 'warn', 'err', '']);
  eq('row classes', lineRow({seq: 3, text: 'oops', stream: 'stderr', partial: true}, new AnsiState()), {q: 3, h: 'oops', t: 'oops', c: ' stderr partial'});
  const ch = makeChunk('s', [{q: 1, h: 'a', t: 'hello', c: ''}, {q: 2, h: 'b\u0000', t: '', c: 'err'}, {q: 3, h: 'c', t: 'lo w', c: 'warn'}]);
  eq('chunk fields', [0, 1, 2].map(i => [ch.q[i], field(ch.h, ch.ho, i), field(ch.t, ch.to, i), field(ch.c, ch.co, i)]),
     [[1, 'a', 'hello', ''], [2, 'b\ufffd', '', 'err'], [3, 'c', 'lo w', 'warn']]);
  eq('rowAt', [0, 5, 6, 7, 9].map(p => rowAt(ch.to, p)), [0, 0, 1, 2, 2]);

  // Banners escape what they show (a node label is user input).
  const { LogView } = await import('./logview.js');
  const v = new LogView(document.createElement('div'));
  v.stepEnded({step: 's', exit_code: 1, lines: 2}, '<img src=x onerror=alert(1)>');
  v.gapBanner('s', 1, 2, '<b>');
  eq('escaped banners', v.queue.map(q => q.chunk.h), ['■ &lt;img src=x onerror=alert(1)&gt; finished: exit code 1 · 2 lines', 'lines 1–2 are not available here (&lt;b&gt;)']);
  eq('banner classes', v.queue.map(q => q.chunk.c), ['banner fail', 'banner gap']);

  // LogStream ordering, fed frames directly (no socket).
  const got = [];
  const s = new LogStream({run, step, on: {lines: (id, ls) => got.push(...ls.map(l => l.seq))}});
  const L = (a, b) => Array.from({length: b - a + 1}, (_, i) => ({seq: a + i, text: 'x'}));
  s.handle({type: 'lines', run, step, lines: L(1, 10)});
  s.handle({type: 'lines', run, step, lines: L(5, 12)});   // overlap: 11, 12 new
  s.handle({type: 'lines', run, step, lines: L(18, 20)});  // hole 13..17: filled over REST first
  s.handle({type: 'lines', run, step, lines: L(1, 20)});   // a replay after a reconnect: nothing new
  s.handle({type: 'lines', run, step: 'other-step', lines: L(1, 3)}); // another step: not followed
  await Promise.all([...s.chains.values()]);
  eq('seqs passed on exactly once, in order', got, Array.from({length: 20}, (_, i) => i + 1));

  // A gap larger than the REST fill limit at the start of a long log: only its newest 50,000 lines
  // are fetched, the rest is left to "Load earlier", and nothing is reported missing.
  if (bigRun) {
    const seqs = [], gaps = [];
    const b = new LogStream({run: bigRun, step: bigStep, on: {lines: (id, ls) => seqs.push(ls[0].seq, ls[ls.length - 1].seq, ls.length), gap: (...a) => gaps.push(a)}});
    b.handle({type: 'gap', run: bigRun, step: bigStep, from_seq: 1, to_seq: 100000, reason: 'evicted'});
    b.handle({type: 'lines', run: bigRun, step: bigStep, lines: L(100001, 100002)});
    await Promise.all([...b.chains.values()]);
    let n = 0; for (let i = 2; i < seqs.length; i += 3) n += seqs[i];
    eq('large initial gap', {first: seqs[0], last: seqs[seqs.length - 2], n, gaps}, {first: 50001, last: 100002, n: 50002, gaps: []});
  }
  return fails;
})`

func testJSUnits(t *testing.T, b *tab, base string) {
	b.t = t
	id, steps := b.e.submit(t, "slow.py")
	b.e.waitRun(t, id, 30*time.Second)
	b.nav(base)
	b.wait("app", `document.querySelector('table.runs') !== null`, 10*time.Second)
	fails := js[[]string](b, jsUnits+`(`+jsString(id)+`, `+jsString(steps[0])+`, `+jsString(b.e.bigRun)+`, `+jsString(b.e.bigStep)+`)`)
	for _, f := range fails {
		t.Error(f)
	}
}

// testPanelToken opens the panel the way a cross-origin notebook embed does: no session cookie, the
// token in the fragment. The panel must follow the step with it (REST and websocket) and drop it
// from the address.
func testPanelToken(t *testing.T, e *env, base, name string) {
	id, steps := e.submit(t, "fail.py")
	b := e.newTab(t, true)
	b.nav(base + "panel.html#run=" + id + "&step=" + steps[0] + "&token=" + e.token)
	b.wait("lines and exit banner", `window.kfbridge.logView.countMatching('almost done') === 1 &&
		[...document.querySelectorAll('.ln.banner.fail')].some(d => d.textContent.includes('exit code 3'))`, 20*time.Second)
	if loc := js[string](b, `location.href`); strings.Contains(loc, "token") {
		t.Errorf("the token is still in the address: %s", loc)
	}
	if c := js[string](b, `document.cookie`); c != "" {
		t.Errorf("cookies %q, want none (the panel must not need a session)", c)
	}
	// Ctrl+F goes to the log's own search (the browser's cannot see virtualized rows); Escape clears.
	if ok := js[bool](b, `(() => { const e = new KeyboardEvent('keydown', {key: 'f', ctrlKey: true, cancelable: true});
		document.dispatchEvent(e); const s = document.querySelector('.log-search');
		if (!e.defaultPrevented || document.activeElement !== s) return false;
		s.value = 'x'; s.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'})); return s.value === ''; })()`); !ok {
		t.Error("Ctrl+F did not focus the log search, or Escape did not clear it")
	}
	b.shot(name + "-panel-token-embed")
}
