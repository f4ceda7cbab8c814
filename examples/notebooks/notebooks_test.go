// Package notebooks_test runs the notebooks example end to end with the built binaries: a script,
// a notebook and a script through the local runtime, with the local store and with S3 (versitygw).
package notebooks_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/kfbridge/kfbridge/storage/s3test"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kfbridge-notebooks-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	out, err := exec.Command("go", "build", "-o", dir, "github.com/kfbridge/kfbridge/cmd/kfbridge", "github.com/kfbridge/kfbridge/cmd/kfbridge-step").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needNotebooks skips without Debian's python3-nbclient/python3-ipykernel, except under CI=true.
func needNotebooks(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end run of the example (about 20 s); skipped with -short")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import nbclient, nbformat, ipykernel").Run(); err != nil {
		msg := "python3-nbclient/python3-ipykernel not installed (apt-get install --no-install-recommends python3-nbclient python3-ipykernel)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// workspace copies the example into a fresh workspace and returns it with the source notebook's hash.
func workspace(t *testing.T) (string, [32]byte) {
	t.Helper()
	ws := t.TempDir()
	for _, name := range []string{"notebooks.pipeline", "prepare.py", "analyze.ipynb", "report.py"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ws, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(ws, "analyze.ipynb"))
	return ws, sha256.Sum256(b)
}

// env is the environment of the binaries: the kernel gets a private HOME.
func env(t *testing.T, extra ...string) []string {
	home := t.TempDir()
	return append(append(os.Environ(), "HOME="+home, "IPYTHONDIR="+filepath.Join(home, ".ipython"),
		"PYDEVD_DISABLE_FILE_VALIDATION=1"), extra...)
}

// checkWorkspace verifies the run left the user's files as they were: the source notebook is
// byte-identical and nothing was added.
func checkWorkspace(t *testing.T, ws string, sum [32]byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ws, "analyze.ipynb"))
	if err != nil || sha256.Sum256(b) != sum {
		t.Errorf("the source notebook changed in the workspace (err %v)", err)
	}
	entries, _ := os.ReadDir(ws)
	if len(entries) != 4 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("workspace holds %v; the run added files", names)
	}
}

// checkOutput verifies the run's log and the executed notebook.
func checkOutput(t *testing.T, out string, executed []byte) {
	t.Helper()
	for _, want := range []string{
		"[prepare] wrote data/measurements.csv",
		"[analyze] injected 1 parameter(s) after the cell tagged parameters",
		"[analyze] cell 3/5",
		"[analyze] 10 samples, threshold 0.5",
		"[analyze] s3: 0.651 is above the threshold",
		"[analyze] uploaded executed notebook analyze-output.ipynb",
		"[analyze] KFP visualizations: mlpipeline-metrics.json (2 metric(s))",
		"[report] 3 of 10 samples are above 0.5",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("run output lacks %q", want)
		}
	}
	var nb struct {
		Cells []struct {
			Source   any `json:"source"`
			Metadata struct{ Tags []string }
			Outputs  []map[string]any `json:"outputs"`
		} `json:"cells"`
	}
	if err := json.Unmarshal(executed, &nb); err != nil {
		t.Fatalf("executed notebook: %v", err)
	}
	if len(nb.Cells) != 6 || len(nb.Cells[2].Metadata.Tags) == 0 || nb.Cells[2].Metadata.Tags[0] != "injected-parameters" {
		t.Fatalf("executed notebook has %d cells, want 6 with the injected parameters third", len(nb.Cells))
	}
	for i := 3; i < 6; i++ {
		if len(nb.Cells[i].Outputs) == 0 {
			t.Errorf("executed notebook cell %d has no outputs", i)
		}
	}
	if t.Failed() {
		t.Logf("run output:\n%s", out)
	}
}

// Ensure the example runs end to end with `kfbridge run` (embedded server, local runtime, local
// store): script -> notebook -> script, the notebook's lines live in the output, parameters
// injected, the executed notebook stored with outputs and the workspace untouched.
func TestExampleLocal(t *testing.T) {
	needNotebooks(t)
	ws, sum := workspace(t)
	dataDir := t.TempDir()
	cmd := exec.Command(filepath.Join(binDir, "kfbridge"), "run", filepath.Join(ws, "notebooks.pipeline"),
		"--workspace", ws, "--data-dir", dataDir)
	cmd.Env = env(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kfbridge run: %v\n%s", err, out)
	}
	var executed []byte
	filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "analyze-output.ipynb" {
			executed, _ = os.ReadFile(p)
		}
		return nil
	})
	if executed == nil {
		t.Fatalf("no analyze-output.ipynb in the local store\n%s", out)
	}
	checkOutput(t, string(out), executed)
	checkWorkspace(t, ws, sum)
}

// Ensure the same pipeline runs against S3 (a real versitygw): `kfbridge serve` with the S3 store
// and `kfbridge submit --follow`; the executed notebook lands in the bucket next to the outputs.
func TestExampleS3(t *testing.T) {
	needNotebooks(t)
	gw := s3test.Start(t)
	ws, sum := workspace(t)
	port := freePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	const token = "notebooks-example-token-0123"
	creds := []string{"AWS_ACCESS_KEY_ID=" + gw.AccessKey, "AWS_SECRET_ACCESS_KEY=" + gw.SecretKey}
	var serverLog bytes.Buffer
	srv := exec.Command(filepath.Join(binDir, "kfbridge"), "serve", "--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--workspace", ws, "--data-dir", t.TempDir(), "--token", token, "--step-binary", filepath.Join(binDir, "kfbridge-step"),
		"--s3-endpoint", gw.Endpoint, "--s3-bucket", "kfb-notebooks")
	srv.Env = env(t, creds...)
	srv.Stdout, srv.Stderr = &serverLog, &serverLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			srv.Process.Kill()
		}
		if t.Failed() {
			t.Logf("server log:\n%s", serverLog.String())
		}
	})
	waitHealthy(t, url)

	cmd := exec.Command(filepath.Join(binDir, "kfbridge"), "submit", filepath.Join(ws, "notebooks.pipeline"),
		"--server", url, "--token", token, "--workspace", ws, "--follow")
	cmd.Env = env(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kfbridge submit: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`run (\S+) submitted`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no run id in:\n%s", out)
	}
	key := "runs/" + string(m[1]) + "/analyze-output.ipynb"
	obj, err := gw.Client(t).GetObject(context.Background(), "kfb-notebooks", key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	executed, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatalf("executed notebook %s not in the bucket: %v", key, err)
	}
	checkOutput(t, string(out), executed)
	checkWorkspace(t, ws, sum)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Ensure a cell's lines reach the client of the service live: `kfbridge run NOTEBOOK --json` prints
// what the service's follow stream delivers, and the line printed before a 1 s sleep arrives at
// least 0.8 s before the one after it, both inside the cell (after its marker, before the upload).
func TestLiveThroughService(t *testing.T) {
	needNotebooks(t)
	ws := t.TempDir()
	nb := `{"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
 "cells": [{"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [],
            "source": "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second')"}]}`
	if err := os.WriteFile(filepath.Join(ws, "live.ipynb"), []byte(nb), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "kfbridge"), "run", filepath.Join(ws, "live.ipynb"),
		"--workspace", ws, "--data-dir", t.TempDir(), "--json")
	cmd.Env = env(t)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	arrived := map[string]time.Time{}
	order := map[string]int{}
	var all []string
	dec := json.NewDecoder(stdout)
	for {
		var ev struct{ Type, Stream, Text string }
		if err := dec.Decode(&ev); err != nil {
			break
		}
		if ev.Type != "line" {
			continue
		}
		if _, seen := arrived[ev.Text]; !seen {
			arrived[ev.Text], order[ev.Text] = time.Now(), len(all)
		}
		all = append(all, ev.Stream+": "+ev.Text)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kfbridge run: %v\n%s\n%s", err, strings.Join(all, "\n"), stderr.String())
	}
	first, ok1 := arrived["first"]
	second, ok2 := arrived["second"]
	if !ok1 || !ok2 {
		t.Fatalf("the cell's lines did not reach the client:\n%s", strings.Join(all, "\n"))
	}
	gap := second.Sub(first)
	t.Logf("first line reached the client %v before the second", gap)
	if gap < 800*time.Millisecond {
		t.Errorf("first line arrived only %v before the second; want >= 0.8s", gap)
	}
	marker, okm := order["cell 1/1"]
	upload := -1
	for i, l := range all {
		if strings.HasPrefix(l, "system: uploaded executed notebook live-output.ipynb") {
			upload = i
		}
	}
	if !okm || upload < 0 || !(marker < order["first"] && order["second"] < upload) {
		t.Errorf("lines not inside the cell (marker %d, first %d, second %d, upload %d):\n%s",
			marker, order["first"], order["second"], upload, strings.Join(all, "\n"))
	}
}
