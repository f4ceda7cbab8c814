package server_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/kfp/kfptest"
	"github.com/kfbridge/kfbridge/kfp/kfptest/argoemu"
	"github.com/kfbridge/kfbridge/runs"
	"github.com/kfbridge/kfbridge/storage/s3test"
)

// TestElyraScheduleKFPBehindJupyterProxy is Elyra's Kubeflow Pipelines path end to end, as the
// frontend drives it inside JupyterLab (through the proxy at /user/alice/elyra/, Jupyter's auth
// and XSRF): create a KFP runtime through /elyra/metadata/runtimes, read it back without its
// secrets, save it again with the placeholders, then schedule on it. The fake KFP accepts only the
// bearer token given at creation, so the run existing proves the stored secret survived the
// placeholder round trip; its steps run through the real kfbridge-step (Argo emulator) against
// versitygw, and the live log arrives on kfbridge's websocket.
func TestElyraScheduleKFPBehindJupyterProxy(t *testing.T) {
	gw := s3test.Start(t)
	const cosSecretRef = "kfbridge-s3"
	emu := &argoemu.Emulator{
		StepBinary: filepath.Join(binDir, "kfbridge-step"),
		Secrets:    map[string]map[string]string{cosSecretRef: {"AWS_ACCESS_KEY_ID": gw.AccessKey, "AWS_SECRET_ACCESS_KEY": gw.SecretKey}},
		WorkDir:    t.TempDir(),
		KillGrace:  2 * time.Second,
	}
	fake := kfptest.NewServer(t, kfptest.Options{Versions: []string{"v1beta1", "v2beta1"}, Executor: emu, Tokens: []string{kfpSecret}})

	ws := elyraWorkspace(t)
	s := startServerEnv(t, ws, []string{"KFBRIDGE_KFP_POLL_INTERVAL=100ms"}, "--trust-proxy-auth")
	const jupyterToken = "jupyter-token-kfp"
	proxy := jupyterProxy(t, s.URL, jupyterToken)
	xsrf := tornadoXSRF([]byte("fedcba9876543210fedcba9876543210"), []byte{5, 6, 7, 8})
	jupyter := func(r *http.Request) {
		r.Header.Set("Authorization", "token "+jupyterToken)
		r.AddCookie(&http.Cookie{Name: "_xsrf", Value: xsrf})
		r.Header.Set("X-XSRFToken", xsrf)
	}
	f := elyraFlow{host: proxy.URL, root: "/user/alice/elyra", elyraBase: "/user/alice/elyra", jupyterBase: "/user/alice/", srv: s, header: jupyter}
	c := newElyraClient(t, proxy.URL+"/user/alice", jupyter)

	secrets := []string{kfpSecret, gw.SecretKey}
	_, created := c.expect("POST", "/elyra/metadata/runtimes", map[string]any{"display_name": "Team KFP", "schema_name": "kfp", "metadata": map[string]any{
		"runtime_type": "KUBEFLOW_PIPELINES", "api_endpoint": fake.URL, "api_version": "v2beta1",
		"auth_type": "EXISTING_BEARER_TOKEN", "api_password": kfpSecret,
		"cos_endpoint": gw.Endpoint, "cos_bucket": "elyra-kfp", "cos_auth_type": "KUBERNETES_SECRET", "cos_secret": cosSecretRef,
		"cos_username": gw.AccessKey, "cos_password": gw.SecretKey, "runner_image": "ghcr.io/kfbridge/kfbridge:test", "tags": []string{}}}, 201)
	noValues(t, created, secrets)
	_, got := c.expect("GET", "/elyra/metadata/runtimes/team_kfp", nil, 200)
	noValues(t, got, secrets)
	md := got["metadata"].(map[string]any)
	if md["api_password"] != runs.SecretPlaceholder || md["cos_password"] != runs.SecretPlaceholder {
		t.Fatalf("secrets read back as %v / %v", md["api_password"], md["cos_password"])
	}
	md["description"] = "edited in the runtime form"
	_, updated := c.expect("PUT", "/elyra/metadata/runtimes/team_kfp", got, 200)
	noValues(t, updated, secrets)

	start := time.Now()
	_, sched := c.expect("POST", "/elyra/pipeline/schedule", frontendPipeline("team_kfp", "KUBEFLOW_PIPELINES", false, "flows/hello.py"), 200)
	answered := time.Since(start)
	noValues(t, sched, secrets)
	id, _ := sched["kfbridge_run_id"].(string)
	kfpRun, _ := sched["run_id"].(string)
	if sched["platform"] != "KUBEFLOW_PIPELINES" || id == "" || kfpRun == "" || kfpRun == id {
		t.Fatalf("schedule answer: %v", sched)
	}
	if fr := fake.Run(kfpRun); fr == nil {
		t.Fatalf("run_id %s is not a run of the fake KFP (runs: %d)", kfpRun, len(fake.Runs()))
	}
	if want := fake.URL + "/#/runs/details/" + kfpRun; sched["run_url"] != want {
		t.Errorf("run_url %v, want %s", sched["run_url"], want)
	}
	if sched["log_panel_url"] != f.root+"/panel.html#run="+id {
		t.Errorf("log_panel_url %v", sched["log_panel_url"])
	}
	if u, _ := sched["object_storage_url"].(string); !strings.HasPrefix(u, gw.Endpoint) {
		t.Errorf("object_storage_url %q, want the runtime's store %s", u, gw.Endpoint)
	}
	bearer := 0
	for _, rq := range fake.Requests() {
		if rq.Header.Get("Authorization") == "Bearer "+kfpSecret {
			bearer++
		}
	}
	if bearer == 0 {
		t.Error("no request reached the fake KFP with the stored bearer token")
	}
	// A runtime whose token KFP refuses: the schedule fails in Elyra's shape, saying why, and the
	// wrong token is not echoed.
	const wrongToken = "not-the-token-kfp-knows"
	c.expect("POST", "/elyra/metadata/runtimes", map[string]any{"name": "bad_token", "display_name": "Bad token", "schema_name": "kfp", "metadata": map[string]any{
		"api_endpoint": fake.URL, "api_version": "v2beta1", "auth_type": "EXISTING_BEARER_TOKEN", "api_password": wrongToken,
		"cos_endpoint": gw.Endpoint, "cos_bucket": "elyra-kfp", "cos_auth_type": "KUBERNETES_SECRET", "cos_secret": cosSecretRef,
		"cos_username": gw.AccessKey, "cos_password": gw.SecretKey, "runner_image": "ghcr.io/kfbridge/kfbridge:test"}}, 201)
	resp, out := c.call("POST", "/elyra/pipeline/schedule", frontendPipeline("bad_token", "KUBEFLOW_PIPELINES", false, "flows/hello.py"))
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(out), "Kubeflow Pipelines") || strings.Contains(string(out), wrongToken) || strings.Contains(string(out), gw.SecretKey) {
		t.Errorf("schedule with a token KFP refuses: %d %s", resp.StatusCode, out)
	}

	final, text := followRunLog(t, f, id)
	if final != runs.StatusSucceeded || !strings.Contains(strings.Join(text, "\n"), "hi from elyra") {
		t.Errorf("KFP run %s ended %s with log %q\npod log:\n%s", id, final, text, emu.Output(kfpRun, "hello"))
	}
	t.Logf("KFP schedule: answered in %v (KFP run created), run followed to its end in %v",
		answered.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

func noValues(t *testing.T, v map[string]any, secrets []string) {
	t.Helper()
	b, _ := json.Marshal(v)
	for _, s := range secrets {
		if strings.Contains(string(b), s) {
			t.Errorf("a secret is in a response: %.300s", b)
		}
	}
}
