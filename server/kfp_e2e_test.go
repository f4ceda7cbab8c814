package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kfbridge/kfbridge/kfp/kfptest"
	"github.com/kfbridge/kfbridge/kfp/kfptest/argoemu"
	"github.com/kfbridge/kfbridge/storage/s3test"
)

// kfpEnv is a kfbridge server with a KFP runtime pointing at a fake KFP (swagger-validated, with the
// Argo emulator running steps through the real kfbridge-step) and at versitygw as its object store.
type kfpEnv struct {
	s       *testServer
	fake    *kfptest.Server
	emu     *argoemu.Emulator
	gw      *s3test.Server
	runtime string
}

const cosSecretName = "kfbridge-s3"

// startKFPEnv starts versitygw, the fake KFP serving only apiVersion ("v1beta1" or "v2beta1"), a
// kfbridge server polling KFP every 100 ms, and creates the runtime "kfp-<version>" on it.
func startKFPEnv(t *testing.T, ws, apiVersion string) *kfpEnv {
	t.Helper()
	return startKFPEnvOpts(t, ws, apiVersion, kfptest.Options{})
}

// startKFPEnvOpts is startKFPEnv with options for the fake KFP (Versions and Executor are set here).
func startKFPEnvOpts(t *testing.T, ws, apiVersion string, fo kfptest.Options) *kfpEnv {
	t.Helper()
	gw := s3test.Start(t)
	emu := &argoemu.Emulator{
		StepBinary: filepath.Join(binDir, "kfbridge-step"),
		Secrets:    map[string]map[string]string{cosSecretName: {"AWS_ACCESS_KEY_ID": gw.AccessKey, "AWS_SECRET_ACCESS_KEY": gw.SecretKey}},
		WorkDir:    t.TempDir(),
		KillGrace:  2 * time.Second,
	}
	versions := []string{"v1beta1"}
	if apiVersion == "v2beta1" {
		versions = []string{"v1beta1", "v2beta1"} // a KFP 2.x server serves both
	}
	fo.Versions, fo.Executor = versions, emu
	fake := kfptest.NewServer(t, fo)
	s := startServerEnv(t, ws, []string{"KFBRIDGE_KFP_POLL_INTERVAL=100ms", "KFBRIDGE_KFP_REQUEST_TIMEOUT=2s"})
	e := &kfpEnv{s: s, fake: fake, emu: emu, gw: gw, runtime: "kfp-" + apiVersion}
	if !fo.MultiUser {
		e.createRuntime(t, e.runtime, fake.URL, apiVersion, map[string]any{})
	}
	return e
}

// createRuntime stores a KFP runtime configuration through the API; extra overrides metadata.
func (e *kfpEnv) createRuntime(t *testing.T, name, endpoint, apiVersion string, extra map[string]any) {
	t.Helper()
	md := map[string]any{
		"api_endpoint": endpoint, "api_version": apiVersion, "auth_type": "NO_AUTHENTICATION",
		"cos_endpoint": e.gw.Endpoint, "cos_bucket": "kfb-kfp", "cos_auth_type": "KUBERNETES_SECRET",
		"cos_secret": cosSecretName, "cos_username": e.gw.AccessKey, "cos_password": e.gw.SecretKey,
		"cos_object_prefix": "team/x", "runner_image": "ghcr.io/kfbridge/kfbridge:test",
	}
	for k, v := range extra {
		if v == nil {
			delete(md, k)
		} else {
			md[k] = v
		}
	}
	b, _ := json.Marshal(map[string]any{"name": name, "display_name": name, "schema_name": "kfp", "metadata": md})
	resp, body := e.s.do(t, "POST", "/api/v1/runtimes", strings.NewReader(string(b)), e.s.auth())
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create runtime %s: %s %s", name, resp.Status, body)
	}
}

type submitAnswer struct {
	ID             string `json:"id"`
	Status         string `json:"status"`
	Runtime        string `json:"runtime"`
	KFPRunID       string `json:"kfp_run_id"`
	RunURL         string `json:"run_url"`
	ObjectStoreURL string `json:"object_storage_url"`
}

// submit posts a pipeline to the runtime, with an Idempotency-Key when key != "".
func (e *kfpEnv) submit(t *testing.T, runtime, path, key string) (*http.Response, []byte) {
	t.Helper()
	hdr := e.s.auth()
	if key != "" {
		hdr["Idempotency-Key"] = key
	}
	return e.s.do(t, "POST", "/api/v1/runs", strings.NewReader(fmt.Sprintf(`{"path":%q,"runtime":%q}`, path, runtime)), hdr)
}

// wsMsg is one server message of the log websocket, with the time it arrived.
type wsMsg struct {
	Type     string `json:"type"`
	Step     string `json:"step"`
	Status   string `json:"status"`
	ExitCode *int   `json:"exit_code"`
	Message  string `json:"message"`
	Lines    []struct {
		Seq    int64     `json:"seq"`
		TS     time.Time `json:"ts"`
		Stream string    `json:"stream"`
		Text   string    `json:"text"`
	} `json:"lines"`
	at time.Time
}

// watchRun opens the run-scoped log websocket and collects every message until the server closes
// it after the run's final event (or the timeout).
func (e *kfpEnv) watchRun(t *testing.T, runID string, timeout time.Duration) <-chan []wsMsg {
	t.Helper()
	url := strings.Replace(e.s.URL, "http", "ws", 1) + "/api/v1/runs/" + runID + "/logs"
	conn, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Authorization": {"Bearer " + e.s.Token}})
	if err != nil {
		t.Fatalf("log websocket: %v", err)
	}
	out := make(chan []wsMsg, 1)
	go func() {
		defer conn.Close()
		var msgs []wsMsg
		conn.SetReadDeadline(time.Now().Add(timeout))
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				break
			}
			var m wsMsg
			json.Unmarshal(b, &m)
			m.at = time.Now()
			msgs = append(msgs, m)
		}
		out <- msgs
	}()
	return out
}

// stepLines returns the user lines (not system) one step sent over the websocket, with arrival times.
func stepLines(msgs []wsMsg, step string) (texts []string, at []time.Time) {
	for _, m := range msgs {
		if m.Type != "lines" || m.Step != step {
			continue
		}
		for _, l := range m.Lines {
			if l.Stream != "system" {
				texts = append(texts, l.Text)
				at = append(at, m.at)
			}
		}
	}
	return texts, at
}

func stepEvents(msgs []wsMsg, step string) []wsMsg {
	var out []wsMsg
	for _, m := range msgs {
		if m.Type == "step" && m.Step == step {
			out = append(out, m)
		}
	}
	return out
}

func lastRunEvent(msgs []wsMsg) *wsMsg {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Type == "run" {
			return &msgs[i]
		}
	}
	return nil
}

type runView struct {
	Status   string `json:"status"`
	Error    string `json:"error"`
	KFPRunID string `json:"kfp_run_id"`
	Steps    []struct {
		ID       string `json:"id"`
		Status   string `json:"status"`
		ExitCode *int   `json:"exit_code"`
		Message  string `json:"message"`
	} `json:"steps"`
}

func (e *kfpEnv) getRun(t *testing.T, id string) runView {
	t.Helper()
	resp, body := e.s.do(t, "GET", "/api/v1/runs/"+id, nil, e.s.auth())
	if resp.StatusCode != 200 {
		t.Fatalf("GET run %s: %s %s", id, resp.Status, body)
	}
	var v runView
	json.Unmarshal(body, &v)
	return v
}

// waitRun polls GET run until it is final.
func (e *kfpEnv) waitRun(t *testing.T, id string, timeout time.Duration) runView {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := e.getRun(t, id)
		switch v.Status {
		case "succeeded", "failed", "cancelled":
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s still %s after %v: %+v", id, v.Status, timeout, v)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Ensure a pipeline submitted to a KFP runtime (v1 Argo and v2 IR) is packaged into the runtime's
// S3 store, compiled, uploaded and run on KFP; the submit answers at once with the KFP run id and
// links; a retry with the same Idempotency-Key returns the same run and creates no second KFP run;
// the steps run (through the real kfbridge-step, the v2 runner downloaded from its presigned URL
// and checked); their statuses and live lines reach a websocket viewer; the run succeeds.
func TestKFPRemoteRunSucceeds(t *testing.T) {
	for _, version := range []string{"v1beta1", "v2beta1"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			ws := t.TempDir()
			writeFile(t, filepath.Join(ws, "a.py"), `import time
print("A: first line", flush=True)
time.sleep(3)
open("handoff.txt", "w").write("payload-from-A\n")
print("A: second line")
`)
			writeFile(t, filepath.Join(ws, "b.py"), "print('B read: ' + open('handoff.txt').read().strip())\n")
			writePipeline(t, ws, "remote-two", []tnode{
				{id: "node-a", file: "a.py", outputs: []string{"handoff.txt"}},
				{id: "node-b", file: "b.py", parents: []string{"node-a"}},
			})
			e := startKFPEnv(t, ws, version)

			start := time.Now()
			resp, body := e.submit(t, e.runtime, "remote-two.pipeline", "key-"+version)
			submitTook := time.Since(start)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("submit: %s %s", resp.Status, body)
			}
			var ans submitAnswer
			json.Unmarshal(body, &ans)
			if ans.ID == "" || ans.KFPRunID == "" || ans.Runtime != e.runtime || ans.Status != "running" {
				t.Fatalf("submit answer = %s, want id, kfp_run_id, runtime %s, status running", body, e.runtime)
			}
			if want := e.fake.URL + "/#/runs/details/" + ans.KFPRunID; ans.RunURL != want {
				t.Errorf("run_url = %q, want %q", ans.RunURL, want)
			}
			if want := e.gw.Endpoint + "/kfb-kfp/team/x/runs/" + ans.ID; ans.ObjectStoreURL != want {
				t.Errorf("object_storage_url = %q, want %q", ans.ObjectStoreURL, want)
			}
			msgsc := e.watchRun(t, ans.ID, 60*time.Second)

			// The retry gets the same answer and KFP still has one run.
			resp2, body2 := e.submit(t, e.runtime, "remote-two.pipeline", "key-"+version)
			if resp2.StatusCode != http.StatusCreated || string(body2) != string(body) || resp2.Header.Get("Idempotent-Replayed") != "true" {
				t.Errorf("retry with the same Idempotency-Key: %s %q (replayed %q), want 201 and the first body %q", resp2.Status, body2, resp2.Header.Get("Idempotent-Replayed"), body)
			}
			if n := len(e.fake.Runs()); n != 1 {
				t.Errorf("KFP has %d runs after a retried submit, want 1", n)
			}
			fr := e.fake.Run(ans.KFPRunID)
			if fr == nil || fr.APIVersion != version {
				t.Fatalf("fake KFP run %s: %+v, want one created through %s", ans.KFPRunID, fr, version)
			}
			if fr.PipelineID == "" || fr.VersionID == "" {
				t.Errorf("run was not created from an uploaded pipeline version: %+v", fr)
			}

			msgs := <-msgsc
			a, aAt := stepLines(msgs, "node-a")
			if len(a) != 2 || a[0] != "A: first line" || a[1] != "A: second line" {
				t.Fatalf("lines of node-a over the websocket = %q, want A's two lines\nmessages: %+v\nnode-a pod log:\n%s", a, msgs, e.emu.Output(ans.KFPRunID, "a"))
			}
			for _, m := range msgs {
				for _, l := range m.Lines {
					if m.Step == "node-a" && l.Text == "A: first line" {
						// Printed in the step, uploaded in a segment, tailed from the bucket, sent.
						t.Logf("%s: A's first line reached the viewer %v after the step printed it", version, m.at.Sub(l.TS).Round(time.Millisecond))
					}
				}
			}
			if gap := aAt[1].Sub(aAt[0]); gap < time.Second {
				t.Errorf("A's first line arrived only %v before its second; want >= 1s (tailed live, not at step end)", gap)
			}
			if b, _ := stepLines(msgs, "node-b"); len(b) != 1 || b[0] != "B read: payload-from-A" {
				t.Errorf("lines of node-b = %q, want B reading A's output\nmessages: %+v\nnode-b pod log:\n%s", b, msgs, e.emu.Output(ans.KFPRunID, "b"))
			}
			for _, step := range []string{"node-a", "node-b"} {
				evs := stepEvents(msgs, step)
				if len(evs) < 2 || evs[0].Status != "running" || evs[len(evs)-1].Status != "succeeded" ||
					evs[len(evs)-1].ExitCode == nil || *evs[len(evs)-1].ExitCode != 0 {
					t.Errorf("step events of %s = %+v, want running ... succeeded exit 0", step, evs)
				}
			}
			if last := lastRunEvent(msgs); last == nil || last.Status != "succeeded" {
				t.Errorf("last run event = %+v, want succeeded", last)
			}
			v := e.waitRun(t, ans.ID, 10*time.Second)
			if v.Status != "succeeded" || v.KFPRunID != ans.KFPRunID {
				t.Errorf("GET run = %+v, want succeeded with the KFP run id", v)
			}
			if fr.Phase() != kfptest.PhaseSucceeded {
				t.Errorf("fake KFP run phase = %s, want Succeeded", fr.Phase())
			}
			t.Logf("%s: submit answered in %v; run done %v after submit", version, submitTook, time.Since(start))
		})
	}
}

// Ensure a failing step fails the KFP run: the step is reported failed with its exit code, its
// descendant is skipped, and the run is failed, on v1 and v2.
func TestKFPRemoteRunFailingStep(t *testing.T) {
	for _, version := range []string{"v1beta1", "v2beta1"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			ws := t.TempDir()
			writeFile(t, filepath.Join(ws, "fail.py"), "import sys\nprint('about to fail')\nsys.exit(3)\n")
			writeFile(t, filepath.Join(ws, "after.py"), "print('must not run')\n")
			writePipeline(t, ws, "remote-fail", []tnode{
				{id: "f", file: "fail.py"},
				{id: "g", file: "after.py", parents: []string{"f"}},
			})
			e := startKFPEnv(t, ws, version)
			resp, body := e.submit(t, e.runtime, "remote-fail.pipeline", "")
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("submit: %s %s", resp.Status, body)
			}
			var ans submitAnswer
			json.Unmarshal(body, &ans)
			msgs := <-e.watchRun(t, ans.ID, 60*time.Second)
			evs := stepEvents(msgs, "f")
			if len(evs) == 0 || evs[len(evs)-1].Status != "failed" || evs[len(evs)-1].ExitCode == nil || *evs[len(evs)-1].ExitCode != 3 {
				t.Errorf("step f events = %+v, want failed with exit code 3", evs)
			}
			if f, _ := stepLines(msgs, "f"); len(f) != 1 || f[0] != "about to fail" {
				t.Errorf("lines of f = %q", f)
			}
			if g := stepEvents(msgs, "g"); len(g) == 0 || g[len(g)-1].Status != "skipped" {
				t.Errorf("step g events = %+v, want skipped", g)
			}
			if last := lastRunEvent(msgs); last == nil || last.Status != "failed" {
				t.Errorf("last run event = %+v, want failed", last)
			}
			v := e.waitRun(t, ans.ID, 10*time.Second)
			if v.Status != "failed" {
				t.Errorf("run status %s, want failed", v.Status)
			}
			for _, st := range v.Steps {
				if st.ID == "f" && (st.ExitCode == nil || *st.ExitCode != 3) {
					t.Errorf("GET run step f exit code %v, want 3", st.ExitCode)
				}
			}
		})
	}
}

// Ensure cancelling a run on KFP terminates the KFP run (the step's process is stopped) and the
// run ends cancelled.
func TestKFPRemoteRunCancel(t *testing.T) {
	for _, version := range []string{"v1beta1", "v2beta1"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			ws := t.TempDir()
			writeFile(t, filepath.Join(ws, "slow.py"), "import time\nprint('working', flush=True)\ntime.sleep(60)\nprint('finished')\n")
			writePipeline(t, ws, "remote-slow", []tnode{{id: "slow", file: "slow.py"}})
			e := startKFPEnv(t, ws, version)
			resp, body := e.submit(t, e.runtime, "remote-slow.pipeline", "")
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("submit: %s %s", resp.Status, body)
			}
			var ans submitAnswer
			json.Unmarshal(body, &ans)
			msgsc := e.watchRun(t, ans.ID, 60*time.Second)
			deadline := time.Now().Add(30 * time.Second)
			for e.fake.Run(ans.KFPRunID).StepPhase("slow") != kfptest.PhaseRunning || !strings.Contains(e.emu.Output(ans.KFPRunID, "slow"), "working") {
				if time.Now().After(deadline) {
					t.Fatalf("step never ran: %s", e.emu.Output(ans.KFPRunID, "slow"))
				}
				time.Sleep(50 * time.Millisecond)
			}
			started := time.Now()
			resp, body = e.s.do(t, "POST", "/api/v1/runs/"+ans.ID+":cancel", nil, e.s.auth())
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("cancel: %s %s", resp.Status, body)
			}
			if !e.fake.Run(ans.KFPRunID).Terminated() {
				t.Error("cancel answered before KFP was asked to terminate the run")
			}
			if n := e.fake.CountRequests("POST", terminatePath(version, ans.KFPRunID)); n != 1 {
				t.Errorf("%d terminate requests, want 1", n)
			}
			v := e.waitRun(t, ans.ID, 30*time.Second)
			if v.Status != "cancelled" {
				t.Errorf("run status %s, want cancelled (%+v)", v.Status, v)
			}
			if took := time.Since(started); took > 15*time.Second {
				t.Errorf("cancel took %v", took)
			}
			msgs := <-msgsc
			if last := lastRunEvent(msgs); last == nil || last.Status != "cancelled" {
				t.Errorf("last run event = %+v, want cancelled", last)
			}
			for _, l := range strings.Split(e.emu.Output(ans.KFPRunID, "slow"), "\n") {
				if strings.TrimSpace(l) == "finished" {
					t.Error("the step's process was not stopped")
				}
			}
		})
	}
}

func terminatePath(version, id string) string {
	if version == "v1beta1" {
		return "/apis/v1beta1/runs/" + id + "/terminate"
	}
	return "/apis/v2beta1/runs/" + id + ":terminate"
}

// Ensure submits survive KFP's failures without duplicates and fail with clear errors otherwise:
// KFP unreachable -> 502 naming KFP, nothing created; transient 503s on create run -> retried,
// one run; the create-run answer lost after KFP created it -> found again, one run; KFP failing
// every upload -> 502 with KFP's status, no run; USER_CREDENTIALS without cos_secret -> 400 saying
// to set cos_secret; a concurrent retry with the same Idempotency-Key while KFP is slow -> one run.
func TestKFPSubmitFaults(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "x.py"), "print('x')\n")
	writePipeline(t, ws, "faulty", []tnode{{id: "x", file: "x.py"}})
	e := startKFPEnv(t, ws, "v1beta1")
	runsPath := "/apis/v1beta1/runs"
	countRuns := func() int { return len(e.fake.Runs()) }
	type problem struct {
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	expectProblem := func(name string, resp *http.Response, body []byte, code int, want ...string) {
		t.Helper()
		var p problem
		json.Unmarshal(body, &p)
		if resp.StatusCode != code {
			t.Errorf("%s: %s %s, want %d", name, resp.Status, body, code)
			return
		}
		for _, w := range want {
			if !strings.Contains(p.Detail, w) {
				t.Errorf("%s: detail %q does not mention %q", name, p.Detail, w)
			}
		}
	}

	// KFP down: a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	e.createRuntime(t, "kfp-down", down, "v1beta1", nil)
	resp, body := e.submit(t, "kfp-down", "faulty.pipeline", "")
	expectProblem("KFP down", resp, body, http.StatusBadGateway, "kfp-down", "unreachable")

	// Transient 503s on create run: retried, exactly one run.
	e.fake.InjectFault(kfptest.Fault{Method: "POST", Path: runsPath, Status: http.StatusServiceUnavailable, Times: 2})
	resp, body = e.submit(t, e.runtime, "faulty.pipeline", "")
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("submit with two 503s on create run: %s %s, want 201 after retries", resp.Status, body)
	}
	if n := countRuns(); n != 1 {
		t.Errorf("%d KFP runs after a submit with transient 503s, want 1", n)
	}

	// The answer to create run is lost after KFP created it: no second run.
	e.fake.InjectFault(kfptest.Fault{Method: "POST", Path: runsPath, Drop: true, AfterHandle: true})
	resp, body = e.submit(t, e.runtime, "faulty.pipeline", "")
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("submit whose create-run answer was lost: %s %s, want 201", resp.Status, body)
	}
	var ans submitAnswer
	json.Unmarshal(body, &ans)
	if n := countRuns(); n != 2 {
		t.Errorf("%d KFP runs after the lost answer, want 2 (one per submit)", n)
	}
	if ans.KFPRunID != "" && e.fake.Run(ans.KFPRunID) == nil {
		t.Errorf("answer names KFP run %s, which does not exist", ans.KFPRunID)
	}

	// KFP answering 500 to every upload: clear error, nothing created.
	e.fake.InjectFault(kfptest.Fault{Method: "POST", Path: "/apis/v1beta1/pipelines/upload_version", Status: http.StatusInternalServerError})
	resp, body = e.submit(t, e.runtime, "faulty.pipeline", "")
	expectProblem("upload 500", resp, body, http.StatusBadGateway, "upload pipeline", "500")
	if n := countRuns(); n != 2 {
		t.Errorf("%d KFP runs after a failed upload, want still 2", n)
	}

	// USER_CREDENTIALS without a Secret: refused before anything is uploaded.
	e.createRuntime(t, "kfp-usercreds", e.fake.URL, "v1beta1", map[string]any{"cos_auth_type": "USER_CREDENTIALS", "cos_secret": nil})
	resp, body = e.submit(t, "kfp-usercreds", "faulty.pipeline", "")
	expectProblem("USER_CREDENTIALS", resp, body, http.StatusBadRequest, "cos_secret", "USER_CREDENTIALS")

	// Unknown runtime.
	resp, body = e.submit(t, "no-such-runtime", "faulty.pipeline", "")
	expectProblem("unknown runtime", resp, body, http.StatusBadRequest, "no-such-runtime")

	// A retry racing the first request while KFP is slow: one run, same answer twice.
	e.fake.InjectFault(kfptest.Fault{Method: "POST", Path: runsPath, Delay: 1500 * time.Millisecond})
	before := countRuns()
	var wg sync.WaitGroup
	bodies := make([][]byte, 2)
	codes := make([]int, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 1 {
				time.Sleep(300 * time.Millisecond)
			}
			resp, body := e.submit(t, e.runtime, "faulty.pipeline", "race-key")
			codes[i], bodies[i] = resp.StatusCode, body
		}()
	}
	wg.Wait()
	if codes[0] != 201 || codes[1] != 201 || string(bodies[0]) != string(bodies[1]) {
		t.Errorf("concurrent retries: %d %s / %d %s, want the same 201 answer", codes[0], bodies[0], codes[1], bodies[1])
	}
	if n := countRuns() - before; n != 1 {
		t.Errorf("%d KFP runs from two concurrent requests with one Idempotency-Key, want 1", n)
	}
	// The same key for a different request is refused.
	writePipeline(t, ws, "other", []tnode{{id: "x", file: "x.py"}})
	resp, body = e.submit(t, e.runtime, "other.pipeline", "race-key")
	expectProblem("key reuse", resp, body, http.StatusConflict, "Idempotency-Key")
	if v := e.fake.Violations(); len(v) > 0 {
		t.Errorf("contract violations: %v", v)
	}
}

// startServerData runs the real binary with a given data dir (to restart a server on its state);
// stop ends it gracefully.
func startServerData(t *testing.T, workspace, dataDir string, env []string) (s *testServer, stop func()) {
	t.Helper()
	s = &testServer{Token: "test-token-0123456789", Workspace: workspace, DataDir: dataDir, stderr: &bytes.Buffer{}}
	port := freePort(t)
	s.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
	s.cmd = exec.Command(filepath.Join(binDir, "kfbridge"), "serve", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--workspace", workspace, "--data-dir", dataDir, "--token", s.Token)
	s.cmd.Stdout, s.cmd.Stderr = s.stderr, s.stderr
	s.cmd.Env = append(os.Environ(), env...)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			s.cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { s.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				s.cmd.Process.Kill()
				t.Errorf("server did not shut down within 20s")
			}
			if t.Failed() {
				t.Logf("server log:\n%s", s.stderr)
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, stop
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start: %v\n%s", err, s.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Ensure a KFP run outlives a kfbridge restart: stopping the server leaves the run running (it
// goes on in KFP, it is not cancelled), and the restarted server follows it to the end, with the
// step's lines served from the runtime's object store.
func TestKFPRunSurvivesRestart(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "long.py"), "import time\nprint('before restart', flush=True)\ntime.sleep(4)\nprint('after restart')\n")
	writePipeline(t, ws, "remote-long", []tnode{{id: "long", file: "long.py"}})
	e := startKFPEnv(t, ws, "v1beta1")
	e.s.cmd.Process.Signal(os.Interrupt) // the env's own server is not used below
	dataDir := t.TempDir()
	env := []string{"KFBRIDGE_KFP_POLL_INTERVAL=100ms"}
	s1, stop1 := startServerData(t, ws, dataDir, env)
	e.s = s1
	e.createRuntime(t, "kfp-r", e.fake.URL, "v1beta1", nil)
	resp, body := e.submit(t, "kfp-r", "remote-long.pipeline", "")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %s %s", resp.Status, body)
	}
	var ans submitAnswer
	json.Unmarshal(body, &ans)
	deadline := time.Now().Add(30 * time.Second)
	for e.getRun(t, ans.ID).Steps[0].Status != "running" {
		if time.Now().After(deadline) {
			t.Fatal("step never reported running")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop1()
	if fr := e.fake.Run(ans.KFPRunID); fr.Terminated() {
		t.Fatal("stopping kfbridge terminated the KFP run")
	}
	rec, err := os.ReadFile(filepath.Join(dataDir, "runs", ans.ID, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	var stored runView
	json.Unmarshal(rec, &stored)
	if stored.Status != "running" {
		t.Fatalf("after a graceful stop the run record says %s (%s), want still running", stored.Status, stored.Error)
	}
	s2, _ := startServerData(t, ws, dataDir, env)
	e.s = s2
	msgs := <-e.watchRun(t, ans.ID, 30*time.Second)
	v := e.waitRun(t, ans.ID, 20*time.Second)
	if v.Status != "succeeded" || v.Steps[0].Status != "succeeded" {
		t.Errorf("run after restart = %+v, want succeeded", v)
	}
	if lines, _ := stepLines(msgs, "long"); strings.Join(lines, "|") != "before restart|after restart" {
		t.Errorf("lines over the restarted server's websocket = %q", lines)
	}
}

// Ensure a create-run request that times out while KFP still processes it (KFP answers after
// 1.5 s, the client gives up after its 1 s request timeout) does not make a second run: the client
// waits as long as its request timeout, looks the run up instead of sending again, and the submit
// answers with the one run.
func TestKFPSubmitTimeoutNoDuplicate(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "x.py"), "print('x')\n")
	writePipeline(t, ws, "slowkfp", []tnode{{id: "x", file: "x.py"}})
	e := startKFPEnv(t, ws, "v1beta1")
	e.s.cmd.Process.Signal(os.Interrupt) // replaced by a server with a short KFP request timeout
	s, _ := startServerData(t, ws, t.TempDir(), []string{"KFBRIDGE_KFP_POLL_INTERVAL=100ms", "KFBRIDGE_KFP_REQUEST_TIMEOUT=1s"})
	e.s = s
	e.createRuntime(t, "kfp-t", e.fake.URL, "v1beta1", nil)
	e.fake.InjectFault(kfptest.Fault{Method: "POST", Path: "/apis/v1beta1/runs", Delay: 1500 * time.Millisecond, Detached: true})
	resp, body := e.submit(t, "kfp-t", "slowkfp.pipeline", "")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit with a create-run timeout: %s %s, want 201 (the run was created)", resp.Status, body)
	}
	var ans submitAnswer
	json.Unmarshal(body, &ans)
	time.Sleep(2500 * time.Millisecond) // let every late request land
	if n := len(e.fake.Runs()); n != 1 || e.fake.Runs()[0].ID != ans.KFPRunID {
		t.Errorf("KFP has %d runs after a timed-out create; want exactly the answered one (%s)", n, ans.KFPRunID)
	}
	if n := e.fake.CountRequests("POST", "/apis/v1beta1/runs"); n != 1 {
		t.Errorf("create run sent %d times; want 1 (found by look-up, not re-sent)", n)
	}
	if v := e.waitRun(t, ans.ID, 20*time.Second); v.Status != "succeeded" {
		t.Errorf("run = %+v, want succeeded", v)
	}
}

// Ensure independent steps of a KFP run execute in parallel (the emulator follows the DAG like
// Argo) and the join step runs after both, seeing both branches' outputs.
func TestKFPRemoteRunParallelBranches(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "root.py"), "open('seed.txt','w').write('seed')\n")
	writeFile(t, filepath.Join(ws, "left.py"), "import time\ntime.sleep(1.5)\nopen('left.txt','w').write('L')\n")
	writeFile(t, filepath.Join(ws, "right.py"), "import time\ntime.sleep(1.5)\nopen('right.txt','w').write('R')\n")
	writeFile(t, filepath.Join(ws, "join.py"), "print(open('seed.txt').read(), open('left.txt').read(), open('right.txt').read())\n")
	writePipeline(t, ws, "diamond", []tnode{
		{id: "root", file: "root.py", outputs: []string{"seed.txt"}},
		{id: "left", file: "left.py", parents: []string{"root"}, outputs: []string{"left.txt"}},
		{id: "right", file: "right.py", parents: []string{"root"}, outputs: []string{"right.txt"}},
		{id: "join", file: "join.py", parents: []string{"left", "right"}},
	})
	e := startKFPEnv(t, ws, "v2beta1")
	resp, body := e.submit(t, e.runtime, "diamond.pipeline", "")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %s %s", resp.Status, body)
	}
	var ans submitAnswer
	json.Unmarshal(body, &ans)
	msgs := <-e.watchRun(t, ans.ID, 60*time.Second)
	if join, _ := stepLines(msgs, "join"); len(join) != 1 || join[0] != "seed L R" {
		t.Errorf("join printed %q, want both branches' outputs", join)
	}
	_, raw := e.s.do(t, "GET", "/api/v1/runs/"+ans.ID, nil, e.s.auth())
	var v struct {
		Status string
		Steps  []struct {
			ID         string
			StartedAt  time.Time `json:"started_at"`
			FinishedAt time.Time `json:"finished_at"`
		}
	}
	json.Unmarshal(raw, &v)
	at := map[string][2]time.Time{}
	for _, s := range v.Steps {
		at[s.ID] = [2]time.Time{s.StartedAt, s.FinishedAt}
	}
	l, r, j := at["left"], at["right"], at["join"]
	if v.Status != "succeeded" {
		t.Fatalf("run: %s", raw)
	}
	if !(l[0].Before(r[1]) && r[0].Before(l[1])) {
		t.Errorf("left %v and right %v did not overlap: the branches ran one after the other", l, r)
	}
	if j[0].Before(l[1]) || j[0].Before(r[1]) {
		t.Errorf("join started %v before a branch finished (left %v, right %v)", j[0], l[1], r[1])
	}
}

// Ensure submits to a multi-user KFP are namespace-aware: without user_namespace the submit fails
// with a 400 saying to set it (before anything is uploaded); with it the experiment and the run
// are created in that namespace and the run succeeds.
func TestKFPMultiUserNamespace(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "x.py"), "print('in a profile namespace')\n")
	writePipeline(t, ws, "mu", []tnode{{id: "x", file: "x.py"}})
	for _, version := range []string{"v1beta1", "v2beta1"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			e := startKFPEnvOpts(t, ws, version, kfptest.Options{MultiUser: true})
			e.createRuntime(t, "no-ns", e.fake.URL, version, nil)
			resp, body := e.submit(t, "no-ns", "mu.pipeline", "")
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "user_namespace") {
				t.Errorf("multi-user submit without user_namespace: %s %s, want 400 naming user_namespace", resp.Status, body)
			}
			if e.fake.VersionCount() != 0 {
				t.Errorf("%d pipeline versions uploaded by a submit that could not run", e.fake.VersionCount())
			}
			e.createRuntime(t, "alice", e.fake.URL, version, map[string]any{"user_namespace": "alice"})
			resp, body = e.submit(t, "alice", "mu.pipeline", "")
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("submit: %s %s", resp.Status, body)
			}
			var ans submitAnswer
			json.Unmarshal(body, &ans)
			if fr := e.fake.Run(ans.KFPRunID); fr == nil || fr.Namespace != "alice" {
				t.Errorf("KFP run %+v, want it in namespace alice", fr)
			}
			if v := e.waitRun(t, ans.ID, 30*time.Second); v.Status != "succeeded" {
				t.Errorf("run %+v, want succeeded", v)
			}
		})
	}
}

// Ensure pipeline parameters reach the steps on KFP: the submit's value overrides the default, is
// compiled into the package (Argo workflow arguments -> DAG inputs -> step inputs; IR root inputs
// -> task inputs) and arrives in the step's environment, on v1 and v2.
func TestKFPRemoteRunParameters(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "p.py"), "import os\nprint('epochs=' + os.environ['epochs'] + ' note=' + os.environ['note'])\n")
	doc := map[string]any{
		"doc_type": "pipeline", "version": "3.0", "id": "params", "primary_pipeline": "p", "schemas": []any{},
		"json_schema": "http://api.dataplatform.ibm.com/schemas/common-pipeline/pipeline-flow/pipeline-flow-v3-schema.json",
		"pipelines": []any{map[string]any{"id": "p", "runtime_ref": "", "app_data": map[string]any{"version": 8, "properties": map[string]any{
			"name": "params",
			"pipeline_parameters": []any{
				map[string]any{"name": "epochs", "default_value": map[string]any{"type": "Integer", "value": 3}},
				map[string]any{"name": "note", "default_value": map[string]any{"type": "String", "value": "from default"}},
			}}},
			"nodes": []any{map[string]any{"id": "p", "type": "execution_node", "op": "execute-python-node",
				"app_data": map[string]any{"label": "p", "component_parameters": map[string]any{
					"filename": "p.py", "runtime_image": "python:3.11", "dependencies": []string{}, "outputs": []string{},
					"env_vars": []any{}, "pipeline_parameters": []string{"epochs", "note"}}},
				"inputs": []any{map[string]any{"id": "inPort"}}, "outputs": []any{map[string]any{"id": "outPort"}}}},
		}},
	}
	b, _ := json.Marshal(doc)
	writeFile(t, filepath.Join(ws, "params.pipeline"), string(b))
	for _, version := range []string{"v1beta1", "v2beta1"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			e := startKFPEnv(t, ws, version)
			req := fmt.Sprintf(`{"path":"params.pipeline","runtime":%q,"parameters":{"epochs":7}}`, e.runtime)
			resp, body := e.s.do(t, "POST", "/api/v1/runs", strings.NewReader(req), e.s.auth())
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("submit: %s %s", resp.Status, body)
			}
			var ans submitAnswer
			json.Unmarshal(body, &ans)
			msgs := <-e.watchRun(t, ans.ID, 60*time.Second)
			if got, _ := stepLines(msgs, "p"); len(got) != 1 || got[0] != "epochs=7 note=from default" {
				t.Errorf("step printed %q, want the submitted epochs and the default note\npod log:\n%s", got, e.emu.Output(ans.KFPRunID, "p"))
			}
		})
	}
}
