package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	cliAPIPassword = "dex-CLI-pass-0001"
	cliCOSPassword = "cos-CLI-pass-0002"
	cliEnvPassword = "cos-from-ENV-0003"
	cliElyraPass   = "elyra-file-pass-0004"
)

// cli runs the real kfbridge binary against s and returns stdout, stderr and the exit code.
func (s *testServer) cli(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "kfbridge"), args...)
	cmd.Env = append(os.Environ(), append([]string{"KFBRIDGE_SERVER=" + s.URL, "KFBRIDGE_TOKEN=" + s.Token}, env...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// TestRuntimesCLIRoundTrip drives `kfbridge runtimes` and `kfbridge runtime-images` against a
// real server: create from a file and from env secrets, list, get, update with --set (placeholder
// merge), Elyra import of a metadata directory, delete. No secret may appear in any CLI output,
// HTTP response or server log line, while the stored files keep them.
func TestRuntimesCLIRoundTrip(t *testing.T) {
	ws := t.TempDir()
	s := startServer(t, ws)
	var outputs []string
	run := func(wantCode int, env []string, args ...string) string {
		t.Helper()
		stdout, stderr, code := s.cli(t, env, args...)
		outputs = append(outputs, stdout, stderr)
		if code != wantCode {
			t.Fatalf("kfbridge %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, stdout, stderr)
		}
		return stdout + stderr
	}
	tmp := t.TempDir()

	writeFile(t, filepath.Join(tmp, "kf.json"), `{
  "display_name": "Team KFP",
  "metadata": {
    "api_endpoint": "https://kubeflow.example.com/pipeline",
    "auth_type": "DEX_LDAP",
    "api_username": "alice",
    "api_password": "`+cliAPIPassword+`",
    "cos_endpoint": "http://minio.kubeflow:9000",
    "cos_bucket": "team",
    "cos_username": "minio",
    "cos_password": "`+cliCOSPassword+`"
  }
}`)
	if out := run(0, nil, "runtimes", "create", "kf", "--from-file", filepath.Join(tmp, "kf.json")); !strings.Contains(out, "runtime kf created") {
		t.Errorf("create output: %s", out)
	}
	// A bare metadata object, the secret from the environment, another field from --set.
	writeFile(t, filepath.Join(tmp, "bare.json"), `{"api_endpoint":"http://ml-pipeline.kubeflow:8888","cos_endpoint":"http://minio:9000",
		"cos_bucket":"bare","cos_username":"minio"}`)
	run(0, []string{"KFBRIDGE_COS_PASSWORD=" + cliEnvPassword}, "runtimes", "create", "bare", "--from-file", filepath.Join(tmp, "bare.json"),
		"--set", "user_namespace=alice", "--set", "tags=a,b")
	// Secrets on the command line are refused (exit 2), and the value is not echoed.
	if out := run(2, nil, "runtimes", "update", "kf", "--set", "api_password=cmdline-secret-x"); !strings.Contains(out, "KFBRIDGE_API_PASSWORD") ||
		strings.Contains(out, "cmdline-secret-x") {
		t.Errorf("--set api_password output: %s", out)
	}
	// Validation errors come back naming the field.
	if out := run(1, nil, "runtimes", "create", "bad", "--set", "api_endpoint=not-a-url"); !strings.Contains(out, "metadata.api_endpoint") {
		t.Errorf("invalid create output: %s", out)
	}
	if out := run(1, nil, "runtimes", "create", "kf", "--from-file", filepath.Join(tmp, "kf.json")); !strings.Contains(out, "409") {
		t.Errorf("duplicate create output: %s", out)
	}

	list := run(0, nil, "runtimes", "list")
	for _, want := range []string{"local", "kf", "bare", "https://kubeflow.example.com/pipeline"} {
		if !strings.Contains(list, want) {
			t.Errorf("list lacks %q:\n%s", want, list)
		}
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(run(0, nil, "runtimes", "get", "kf")), &got); err != nil {
		t.Fatal(err)
	}
	if md := got["metadata"].(map[string]any); md["api_password"] != "********" || md["cos_password"] != "********" {
		t.Errorf("get shows secrets as %v/%v, want the placeholder", md["api_password"], md["cos_password"])
	}

	// update --set: the stored secrets survive (the placeholder round trip).
	run(0, nil, "runtimes", "update", "kf", "--set", "user_namespace=bob", "--set", "display_name=Team KFP 2")
	stored := readStored(t, filepath.Join(s.DataDir, "metadata", "runtimes", "kf.json"))
	if md := stored["metadata"].(map[string]any); md["api_password"] != cliAPIPassword || md["cos_password"] != cliCOSPassword ||
		md["user_namespace"] != "bob" || stored["display_name"] != "Team KFP 2" {
		t.Errorf("stored after update: %v", stored)
	}
	if md := readStored(t, filepath.Join(s.DataDir, "metadata", "runtimes", "bare.json"))["metadata"].(map[string]any); md["cos_password"] != cliEnvPassword {
		t.Errorf("secret from the environment not stored")
	}
	// get's JSON output, edited and sent back with update --from-file, keeps the secrets too.
	getOut := run(0, nil, "runtimes", "get", "kf")
	writeFile(t, filepath.Join(tmp, "edited.json"), strings.Replace(getOut, `"bob"`, `"carol"`, 1))
	run(0, nil, "runtimes", "update", "kf", "--from-file", filepath.Join(tmp, "edited.json"))
	if md := readStored(t, filepath.Join(s.DataDir, "metadata", "runtimes", "kf.json"))["metadata"].(map[string]any); md["api_password"] != cliAPIPassword || md["user_namespace"] != "carol" {
		t.Errorf("get | edit | update lost the secret or the edit: %v", md)
	}

	// Import an Elyra metadata directory (both schemaspaces), then again: conflicts, unless --overwrite.
	elyra := filepath.Join(tmp, "jupyter", "metadata")
	writeFile(t, filepath.Join(elyra, "runtimes", "kubeflow_dev.json"), `{"display_name":"KF dev","schema_name":"kfp","metadata":{
		"api_endpoint":"https://kf.example.com/pipeline","auth_type":"EXISTING_BEARER_TOKEN","api_password":"`+cliElyraPass+`",
		"cos_endpoint":"http://minio:9000","cos_bucket":"dev","cos_auth_type":"AWS_IAM_ROLES_FOR_SERVICE_ACCOUNTS",
		"runtime_type":"KUBEFLOW_PIPELINES","some_future_field":1}}`)
	writeFile(t, filepath.Join(elyra, "runtime-images", "pandas.json"), `{"display_name":"Pandas","schema_name":"runtime-image",
		"metadata":{"image_name":"quay.io/elyra/pandas:1.0","pull_policy":"IfNotPresent"}}`)
	imp := run(0, nil, "runtimes", "import", elyra)
	if !strings.Contains(imp, "imported runtime kubeflow_dev") || !strings.Contains(imp, "imported runtime image pandas") || !strings.Contains(imp, "some_future_field") {
		t.Errorf("import output: %s", imp)
	}
	run(1, nil, "runtimes", "import", elyra)
	if out := run(0, nil, "runtimes", "import", "--overwrite", filepath.Join(elyra, "runtimes", "kubeflow_dev.json")); !strings.Contains(out, "replaced runtime kubeflow_dev") {
		t.Errorf("overwrite output: %s", out)
	}
	if out := run(0, nil, "runtime-images", "list"); !strings.Contains(out, "quay.io/elyra/pandas:1.0") {
		t.Errorf("image list: %s", out)
	}

	// The HTTP API through the real router, raw: no secret in any body.
	for _, p := range []string{"/api/v1/runtimes", "/api/v1/runtimes/kf", "/api/v1/runtimes/bare", "/api/v1/runtimes/kubeflow_dev", "/api/v1/runtime-images"} {
		resp, body := s.do(t, http.MethodGet, p, nil, s.auth())
		if resp.StatusCode != 200 {
			t.Errorf("GET %s = %d %s", p, resp.StatusCode, body)
		}
		outputs = append(outputs, string(body))
	}

	if out := run(1, nil, "runtimes", "delete", "local"); !strings.Contains(out, "409") {
		t.Errorf("delete local: %s", out)
	}
	run(0, nil, "runtimes", "delete", "kf")
	run(1, nil, "runtimes", "get", "kf")
	run(0, nil, "runtime-images", "delete", "pandas")

	for _, sec := range []string{cliAPIPassword, cliCOSPassword, cliEnvPassword, cliElyraPass, "cmdline-secret-x"} {
		for _, o := range outputs {
			if strings.Contains(o, sec) {
				t.Errorf("output reveals a secret:\n%s", o)
			}
		}
		if strings.Contains(s.stderr.String(), sec) {
			t.Errorf("server log reveals a secret")
		}
	}
}

func readStored(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
