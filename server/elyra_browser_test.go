package server_test

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestElyraLogPanelInBrowser opens the log_panel_url a schedule answered, in a real browser
// logged in to "Jupyter" only (its session cookie, no kfbridge token), through the proxy that
// mounts kfbridge at /user/alice/elyra/: the panel must show the run's log and final status.
func TestElyraLogPanelInBrowser(t *testing.T) {
	chromium := os.Getenv("KFBRIDGE_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is required under CI=true: %v", err)
		}
		t.Skipf("chromium not available: %v", err)
	}
	ws := elyraWorkspace(t)
	s := startServer(t, ws, "--trust-proxy-auth")
	const jupyterToken = "jupyter-token-browser"
	proxy := jupyterProxy(t, s.URL, jupyterToken)
	xsrf := tornadoXSRF([]byte("0011223344556677889900aabbccddee"), []byte{4, 3, 2, 1})
	c := newElyraClient(t, proxy.URL+"/user/alice", func(r *http.Request) {
		r.Header.Set("Authorization", "token "+jupyterToken)
		r.AddCookie(&http.Cookie{Name: "_xsrf", Value: xsrf})
		r.Header.Set("X-XSRFToken", xsrf)
	})
	_, sched := c.expect("POST", "/elyra/pipeline/schedule", frontendPipeline("", "", false, "flows/hello.py"), 200)
	panel, _ := sched["log_panel_url"].(string)
	if panel == "" {
		t.Fatalf("no log_panel_url: %v", sched)
	}

	tmp := t.TempDir()
	home := filepath.Join(tmp, "home")
	os.MkdirAll(home, 0o700)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true), chromedp.UserDataDir(filepath.Join(tmp, "chromium")),
		chromedp.Env("HOME="+home, "TMPDIR="+home))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()

	login := proxy.URL + "/user/alice/login?token=" + jupyterToken + "&next=" + url.QueryEscape(panel)
	start := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate(login),
		chromedp.Poll[chromedp.Void](`document.getElementById('panel-status') && document.getElementById('panel-status').dataset.status === 'succeeded'
			&& document.body.innerText.includes('hi from elyra')`,
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		state, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText.slice(0, 2000)`))
		t.Fatalf("log panel %s: %v\npage: %s", panel, err, state)
	}
	t.Logf("log panel showed the run's log and status %v after navigation", time.Since(start).Round(time.Millisecond))
}
