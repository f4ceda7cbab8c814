package server_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/kfbridge/kfbridge/storage/s3test"
)

// Ensure `kfbridge export` writes both targets: with --no-upload it needs no store at all; with
// upload the archives (and, for KFP v2, the runner binary) land in the bucket and the package
// references them; and no credential ever appears in the output.
func TestExportCLI(t *testing.T) {
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "a.py"), "print('a')\n")
	writeFile(t, filepath.Join(ws, "b.py"), "print('b')\n")
	writePipeline(t, ws, "exp", []tnode{{id: "a", file: "a.py", outputs: []string{"x.txt"}}, {id: "b", file: "b.py", parents: []string{"a"}}})
	run := func(env []string, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "kfbridge"), append([]string{"export", "exp.pipeline"}, args...)...)
		cmd.Dir = ws
		cmd.Env = append(os.Environ(), env...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return out.String(), errb.String(), code
	}

	out, stderr, code := run(nil, "--format", "argo", "--no-upload", "--s3-endpoint", "http://minio.kubeflow:9000", "--s3-bucket", "b")
	if code != 0 || !strings.Contains(out, "kind: Workflow") || !strings.Contains(out, "kfbridge-step") {
		t.Fatalf("argo --no-upload: exit %d\n%s\n%s", code, stderr, out)
	}
	if _, stderr, code := run(nil, "--format", "argo", "--no-upload"); code == 0 || !strings.Contains(stderr, "--s3-endpoint") {
		t.Errorf("no store configured: exit %d, %q; want an error naming --s3-endpoint", code, stderr)
	}
	if _, _, code := run(nil, "--format", "yaml"); code != 2 {
		t.Errorf("bad --format: exit %d, want 2", code)
	}

	gw := s3test.Start(t)
	env := []string{"AWS_ACCESS_KEY_ID=" + gw.AccessKey, "AWS_SECRET_ACCESS_KEY=" + gw.SecretKey}
	for _, format := range []string{"argo", "kfp-v2"} {
		outFile := filepath.Join(t.TempDir(), "pkg.yaml")
		_, stderr, code := run(env, "--format", format, "-o", outFile, "--s3-endpoint", gw.Endpoint, "--s3-bucket", "exports",
			"--s3-prefix", "team", "--step-binary", filepath.Join(binDir, "kfbridge-step"))
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", format, code, stderr)
		}
		pkg, _ := os.ReadFile(outFile)
		if strings.Contains(string(pkg), gw.SecretKey) {
			t.Errorf("%s: the package contains the secret key", format)
		}
		// The access key ID may appear only as the X-Amz-Credential of the runner's presigned URL
		// (an identifier SigV4 puts in every presigned URL, not a secret).
		if n, m := strings.Count(string(pkg), gw.AccessKey), strings.Count(string(pkg), "X-Amz-Credential="+gw.AccessKey); n != m {
			t.Errorf("%s: the access key ID appears %d times outside a presigned URL", format, n-m)
		}
		keys := map[string]bool{}
		for o := range gw.Client(t).ListObjects(context.Background(), "exports", minio.ListObjectsOptions{Recursive: true}) {
			keys[o.Key] = true
		}
		archives := 0
		for k := range keys {
			if strings.HasPrefix(k, "team/archives/") && strings.HasSuffix(k, ".tar.gz") {
				archives++
				if !strings.Contains(string(pkg), k) {
					t.Errorf("%s: package does not reference archive %s", format, k)
				}
			}
		}
		if archives != 2 {
			t.Errorf("%s: %d archives uploaded, want 2 (%v)", format, archives, keys)
		}
		if format == "kfp-v2" {
			found := false
			for k := range keys {
				found = found || strings.HasPrefix(k, "team/runner/kfbridge-step-")
			}
			if !found || !strings.Contains(string(pkg), "X-Amz-Signature") {
				t.Errorf("kfp-v2: runner binary not uploaded/presigned (keys %v)", keys)
			}
		}
	}
}

// Ensure POST /api/v1/pipelines/export validates like a submit and answers the package as YAML.
func TestExportEndpoint(t *testing.T) {
	gw := s3test.Start(t)
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "a.py"), "print('a')\n")
	writePipeline(t, ws, "exp", []tnode{{id: "a", file: "a.py"}})
	writePipeline(t, ws, "broken", []tnode{{id: "z", file: "missing.py"}})
	env := []string{"AWS_ACCESS_KEY_ID=" + gw.AccessKey, "AWS_SECRET_ACCESS_KEY=" + gw.SecretKey}
	s := startServerEnv(t, ws, env, "--s3-endpoint", gw.Endpoint, "--s3-bucket", "exp")

	resp, body := s.do(t, "POST", "/api/v1/pipelines/export", strings.NewReader(`{"path":"exp.pipeline","format":"argo"}`), s.auth())
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/yaml" || !strings.Contains(string(body), "kind: Workflow") {
		t.Fatalf("export: %s %s\n%.300s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	if strings.Contains(string(body), gw.SecretKey) {
		t.Error("exported package contains the secret key")
	}
	resp, body = s.do(t, "POST", "/api/v1/pipelines/export", strings.NewReader(`{"path":"broken.pipeline","format":"kfp-v2"}`), s.auth())
	if resp.StatusCode != 400 || !strings.Contains(string(body), "invalidFilePath") {
		t.Errorf("export of an invalid pipeline: %s %s, want 400 with issues", resp.Status, body)
	}
	resp, _ = s.do(t, "POST", "/api/v1/pipelines/export", strings.NewReader(`{"path":"exp.pipeline","format":"zip"}`), s.auth())
	if resp.StatusCode != 400 {
		t.Errorf("unknown format: %s, want 400", resp.Status)
	}
}
