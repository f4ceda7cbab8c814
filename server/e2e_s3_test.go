package server_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/kfbridge/kfbridge/storage/s3test"
)

// Ensure the local runtime runs end to end with S3 (a real versitygw) as the store: archives, outputs
// and logs land under the expected keys, and outputs given as a directory and as a glob flow to the
// next step.
func TestEndToEndS3(t *testing.T) {
	gw := s3test.Start(t)
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "make.py"), `import os
os.makedirs("out/sub", exist_ok=True)
open("out/a.csv", "w").write("a,1\n")
open("out/sub/b.csv", "w").write("b,2\n")
open("r1.txt", "w").write("one\n")
open("r2.txt", "w").write("two\n")
print("made files")
`)
	writeFile(t, filepath.Join(ws, "use.py"), `print(open("out/a.csv").read().strip(), open("out/sub/b.csv").read().strip(), open("r1.txt").read().strip(), open("r2.txt").read().strip())
`)
	file := writePipeline(t, ws, "s3flow", []tnode{
		{id: "make", file: "make.py", outputs: []string{"out", "r*.txt"}},
		{id: "use", file: "use.py", parents: []string{"make"}},
	})
	env := []string{"AWS_ACCESS_KEY_ID=" + gw.AccessKey, "AWS_SECRET_ACCESS_KEY=" + gw.SecretKey}
	s := startServerEnv(t, ws, env, "--s3-endpoint", gw.Endpoint, "--s3-bucket", "kfb-e2e", "--s3-prefix", "team/a")

	events, code, stderr := submitFollow(t, s, file)
	if code != 0 {
		t.Fatalf("submit exited %d\n%s\n%+v", code, stderr, events)
	}
	use := lineEvents(events, "use")
	if len(use) != 1 || use[0].Text != "a,1 b,2 one two" {
		t.Fatalf("use printed %+v, want every output of make", use)
	}
	runID := events[len(events)-1].ID

	cl := gw.Client(t)
	keys := map[string]bool{}
	for o := range cl.ListObjects(context.Background(), "kfb-e2e", minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		keys[o.Key] = true
	}
	runDir := "team/a/runs/" + runID
	for _, k := range []string{runDir + "/out/a.csv", runDir + "/out/sub/b.csv", runDir + "/r1.txt", runDir + "/r2.txt",
		runDir + "/.kfbridge/make/log.txt", runDir + "/.kfbridge/make/manifest.json", runDir + "/.kfbridge/use/manifest.json"} {
		if !keys[k] {
			t.Errorf("object %s missing; have %v", k, keys)
		}
	}
	archives := 0
	for k := range keys {
		if strings.HasPrefix(k, "team/a/archives/") && strings.HasSuffix(k, ".tar.gz") {
			archives++
		}
	}
	if archives != 2 {
		t.Errorf("%d archives under team/a/archives/, want one per node (2): %v", archives, keys)
	}
}

// Ensure a store that cannot be reached fails the run with a readable error before any step starts,
// and that wrong credentials stop the server at startup with a clear message.
func TestS3Failures(t *testing.T) {
	gw := s3test.Start(t)
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "x.py"), "print('x')\n")
	writePipeline(t, ws, "p", []tnode{{id: "x", file: "x.py"}})

	// Wrong credentials: serve refuses to start and says why.
	cmd := exec.Command(filepath.Join(binDir, "kfbridge"), "serve", "--addr", "127.0.0.1:0", "--workspace", ws,
		"--data-dir", t.TempDir(), "--token", "t", "--s3-endpoint", gw.Endpoint, "--s3-bucket", "kfb-x")
	cmd.Env = append(cmd.Environ(), "AWS_ACCESS_KEY_ID=nobody", "AWS_SECRET_ACCESS_KEY=wrong-secret-123")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("serve started with wrong credentials:\n%s", out)
	}
	if !strings.Contains(strings.ToLower(string(out)), "access key") || !strings.Contains(string(out), gw.Endpoint) {
		t.Errorf("wrong-credentials message does not say what failed:\n%s", out)
	}

	// The store goes away after startup: the run fails while packaging, no step runs.
	env := []string{"AWS_ACCESS_KEY_ID=" + gw.AccessKey, "AWS_SECRET_ACCESS_KEY=" + gw.SecretKey}
	s := startServerEnv(t, ws, env, "--s3-endpoint", gw.Endpoint, "--s3-bucket", "kfb-y")
	gw.Stop()
	resp, body := s.do(t, "POST", "/api/v1/runs", strings.NewReader(`{"path":"p.pipeline"}`), s.auth())
	if resp.StatusCode != 201 {
		t.Fatalf("submit: %s %s", resp.Status, body)
	}
	var run struct{ ID string }
	json.Unmarshal(body, &run)
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, body = s.do(t, "GET", "/api/v1/runs/"+run.ID, nil, s.auth())
		var r struct {
			Status, Error string
			Steps         []struct{ Status string }
		}
		json.Unmarshal(body, &r)
		if r.Status == "failed" {
			if !strings.Contains(r.Error, "packaging failed") || !strings.Contains(r.Error, strings.TrimPrefix(gw.Endpoint, "http://")) {
				t.Errorf("run error %q does not say packaging failed at the endpoint", r.Error)
			}
			for _, st := range r.Steps {
				if st.Status != "skipped" {
					t.Errorf("a step is %s after a failed upload; want skipped (never started)", st.Status)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run did not fail after the store stopped: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
