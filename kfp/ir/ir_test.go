package ir_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kfbridge/kfbridge/kfp/compile"
	"github.com/kfbridge/kfbridge/kfp/compile/compiletest"
	"github.com/kfbridge/kfbridge/kfp/ir"
	"github.com/kfbridge/kfbridge/pipeline"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func cases(t testing.TB) []compiletest.Case {
	return append(compiletest.Corpus(t), compiletest.Case{Name: "full", Pipeline: compiletest.Full()})
}

// decode splits compiled output into its two documents and decodes them strictly.
func decode(t *testing.T, name string, out []byte) (*pbPipelineSpec, *pbPlatformSpec) {
	t.Helper()
	docs := splitDocs(t, out)
	if len(docs) != 2 {
		t.Fatalf("%s: %d YAML documents, want 2 (PipelineSpec, PlatformSpec)", name, len(docs))
	}
	var spec pbPipelineSpec
	if err := roundTrip(docs[0], &spec); err != nil {
		t.Fatalf("%s: PipelineSpec: %v", name, err)
	}
	var plat pbPlatformSpec
	if err := roundTrip(docs[1], &plat); err != nil {
		t.Fatalf("%s: PlatformSpec: %v", name, err)
	}
	return &spec, &plat
}

// TestGolden compares every case with testdata/<case>.ir.yaml (or .ir.err).
// Refresh with: go test ./kfp/ir -update
func TestGolden(t *testing.T) {
	for _, c := range cases(t) {
		t.Run(c.Name, func(t *testing.T) {
			out, err := ir.Compile(c.Pipeline, compiletest.Options())
			golden := filepath.Join("testdata", c.Name+".ir.yaml")
			if err != nil {
				if !errors.Is(err, compile.ErrInvalid) {
					t.Fatalf("error does not wrap compile.ErrInvalid: %v", err)
				}
				golden = filepath.Join("testdata", c.Name+".ir.err")
				out = []byte(err.Error() + "\n")
			}
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("missing golden file (run with -update): %v", rerr)
			}
			if !bytes.Equal(want, out) {
				t.Errorf("%s differs from compiled output (run with -update and review the diff)", golden)
			}
		})
	}
}

// TestStrictRoundTrip decodes every compiled document into the strict proto mirrors and checks
// the backend's semantic rules, with and without a literal run ID and in both credential modes.
func TestStrictRoundTrip(t *testing.T) {
	literal := compiletest.Options()
	literal.RunID = "run-42"
	literal.Credentials = compile.Credentials{Mode: compile.CredentialsIRSA}
	compiled := 0
	for _, c := range cases(t) {
		for mode, opts := range map[string]compile.Options{"placeholder": compiletest.Options(), "literal": literal} {
			out, err := ir.Compile(c.Pipeline, opts)
			if err != nil {
				continue
			}
			compiled++
			name := c.Name + "/" + mode
			spec, plat := decode(t, name, out)
			for _, p := range irProblems(spec, plat) {
				t.Errorf("%s: %s", name, p)
			}
			if len(spec.Components) != len(c.Pipeline.Nodes) || len(spec.Root.DAG.Tasks) != len(c.Pipeline.Nodes) {
				t.Errorf("%s: %d components, %d tasks for %d nodes", name, len(spec.Components), len(spec.Root.DAG.Tasks), len(c.Pipeline.Nodes))
			}
		}
	}
	if compiled < 10 {
		t.Fatalf("only %d documents compiled", compiled)
	}
}

// TestStrictDecoderRejects shows the strict check can fail: an unknown field, a misspelt case and
// a wrong type are rejected.
func TestStrictDecoderRejects(t *testing.T) {
	for name, js := range map[string]string{
		"unknown field": `{"pipelineInfo":{"name":"x"},"schemaVersion":"2.1.0","root":{"dag":{"tasks":{}}},"retries":3}`,
		"wrong case":    `{"pipelineInfo":{"name":"x"},"SchemaVersion":"2.1.0"}`,
		"wrong type":    `{"pipelineInfo":{"name":"x"},"schemaVersion":2}`,
		"readOnly pvc":  `{"platforms":{"kubernetes":{"deploymentSpec":{"executors":{"e":{"pvcMount":[{"constant":"c","mountPath":"/m","readOnly":true}]}}}}}}`,
	} {
		var v any = &pbPipelineSpec{}
		if strings.Contains(js, "platforms") {
			v = &pbPlatformSpec{}
		}
		if err := roundTrip([]byte(js), v); err == nil {
			t.Errorf("%s: accepted %s", name, js)
		}
	}
}

// TestProperties checks how compiletest.Full's node properties land in IR and platform spec.
func TestProperties(t *testing.T) {
	out, err := ir.Compile(compiletest.Full(), compiletest.Options())
	if err != nil {
		t.Fatal(err)
	}
	spec, plat := decode(t, "full", out)
	k8s := plat.Platforms["kubernetes"].DeploymentSpec.Executors
	var trainTask string
	for name, ts := range spec.Root.DAG.Tasks {
		if strings.HasPrefix(ts.TaskInfo.Name, "Train model") {
			trainTask = name
		}
	}
	if trainTask == "" {
		t.Fatal("no task displays the train node's label")
	}
	train := spec.DeploymentSpec.Executors["exec-"+trainTask].Container
	if got := flagValue(train.Args, "--pipeline-parameters"); got != "epochs={{$.inputs.parameters['epochs']}};lr={{$.inputs.parameters['lr']}};dry_run={{$.inputs.parameters['dry_run']}};note={{$.inputs.parameters['note']}}" {
		t.Errorf("--pipeline-parameters = %q", got)
	}
	if got := flagValue(train.Args, "--run-id"); got != "{{$.inputs.parameters['kfbridge_run_id']}}" {
		t.Errorf("--run-id = %q", got)
	}
	in := spec.Root.DAG.Tasks[trainTask].Inputs.Parameters
	if in["epochs"].ComponentInputParameter != "epochs" || in["kfbridge_run_id"].RuntimeValue.Constant != "{{$.pipeline_job_uuid}}" {
		t.Errorf("train inputs not wired: %+v", in)
	}
	if deps := spec.Root.DAG.Tasks[trainTask].DependentTasks; len(deps) != 2 {
		t.Errorf("train dependentTasks = %v", deps)
	}
	r := train.Resources
	if r == nil || r.ResourceCPURequest != "2" || r.ResourceCPULimit != "4" || r.ResourceMemoryRequest != "8G" || r.ResourceMemoryLimit != "16.5G" ||
		r.Accelerator == nil || r.Accelerator.ResourceType != "amd.com/gpu" || r.Accelerator.ResourceCount != "1" {
		t.Errorf("train resources = %+v", r)
	}
	root := spec.Root.InputDefinitions.Parameters
	if root["epochs"].ParameterType != "NUMBER_INTEGER" || root["epochs"].DefaultValue != float64(10) ||
		root["lr"].ParameterType != "NUMBER_DOUBLE" || root["dry_run"].ParameterType != "BOOLEAN" || root["dry_run"].DefaultValue != true ||
		root["dataset"].ParameterType != "STRING" || root["dataset"].IsOptional || root["dataset"].DefaultValue != nil ||
		!root["note"].IsOptional || root["note"].DefaultValue != "" {
		t.Errorf("root parameters: %+v %+v %+v %+v", root["epochs"], root["lr"], root["dry_run"], root["dataset"])
	}
	tc := k8s["exec-"+trainTask]
	if len(tc.SecretAsEnv) != 4 { // wandb, hf, object-store credentials, push token
		t.Errorf("train secretAsEnv = %d entries, want 4", len(tc.SecretAsEnv))
	}
	if len(tc.EmptyDirMounts) != 1 || tc.EmptyDirMounts[0].MountPath != "/dev/shm" || tc.EmptyDirMounts[0].SizeLimit != "2G" || tc.EmptyDirMounts[0].Medium != "Memory" {
		t.Errorf("shared memory = %+v", tc.EmptyDirMounts)
	}
	if tc.ImagePullPolicy != "Always" || len(tc.ImagePullSecret) != 1 || tc.ImagePullSecret[0].SecretName != "regcred" {
		t.Errorf("pull settings = %q %+v", tc.ImagePullPolicy, tc.ImagePullSecret)
	}
	if l := tc.PodMetadata.Labels["kfbridge/node-name"]; len(l) > 63 || l == "" {
		t.Errorf("node-name label %q", l)
	}
	clean := k8s["exec-clean"]
	if len(clean.PvcMount) != 2 || clean.PvcMount[1].SubPath != "ref/v1" || clean.PodMetadata.Annotations["kfbridge/read-only-mounts"] != "/mnt/ref" {
		t.Errorf("clean mounts = %+v, annotations %v", clean.PvcMount, clean.PodMetadata.Annotations)
	}
	if co := spec.Root.DAG.Tasks["clean"].CachingOptions; co == nil || co.EnableCache {
		t.Errorf("clean caching = %+v, want disabled", co)
	}
	if co := spec.Root.DAG.Tasks[trainTask].CachingOptions; co == nil || !co.EnableCache {
		t.Errorf("train caching = %+v, want enabled", co)
	}
	feat := k8s["exec-features"]
	if len(feat.Tolerations) != 2 || feat.PodMetadata.Annotations["example.com/owner"] != "team-a" || feat.PodMetadata.Labels["team"] != "a" {
		t.Errorf("features platform config = %+v", feat)
	}
	if doc := k8s["exec-load-data"].PodMetadata.Annotations["kfbridge/node-user-doc"]; !strings.Contains(doc, "Second line.") {
		t.Errorf("node comment annotation = %q", doc)
	}
	report := spec.DeploymentSpec.Executors["exec-clean-2"].Container
	if got := flagValue(report.Args, "--inputs"); got != "data/raw.csv;data/clean.csv;reports/;data/features.parquet;model/*.pt" {
		t.Errorf("report --inputs = %q", got)
	}
}

// TestNoCredentials: with the credential values in the environment, no compiled document
// contains them, and credentials travel only as secretAsEnv references.
func TestNoCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", compiletest.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", compiletest.SecretKey)
	t.Setenv("KFBRIDGE_PUSH_TOKEN", compiletest.PushToken)
	irsa := compiletest.Options()
	irsa.Credentials = compile.Credentials{Mode: compile.CredentialsIRSA}
	for _, c := range cases(t) {
		for mode, opts := range map[string]compile.Options{"secret": compiletest.Options(), "irsa": irsa} {
			out, err := ir.Compile(c.Pipeline, opts)
			if err != nil {
				continue
			}
			name := c.Name + "/" + mode
			compiletest.AssertNoSecrets(t, name, out)
			spec, plat := decode(t, name, out)
			for label, ex := range spec.DeploymentSpec.Executors {
				for _, e := range ex.Container.Env {
					switch e.Name {
					case "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "KFBRIDGE_PUSH_TOKEN":
						t.Errorf("%s: %s: credential %s as a literal env var", name, label, e.Name)
					}
				}
				refs := 0
				for _, se := range plat.Platforms["kubernetes"].DeploymentSpec.Executors[label].SecretAsEnv {
					for _, k := range se.KeyToEnv {
						switch k.EnvVar {
						case "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "KFBRIDGE_PUSH_TOKEN":
							refs++
						}
					}
				}
				if want := map[string]int{"secret": 3, "irsa": 1}[mode]; refs != want {
					t.Errorf("%s: %s: %d credential secret references, want %d", name, label, refs, want)
				}
			}
		}
	}
}

// TestFetchScript runs the compiled step command for real: it downloads a stand-in runner from an
// HTTP server, verifies the checksum and execs it with the compiled flags, once with each
// download/verify tool the script supports; a wrong checksum must stop it before exec.
func TestFetchScript(t *testing.T) {
	if testing.Short() {
		t.Skip("runs shell subprocesses")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sh not found")
		}
		t.Skip("sh not found")
	}
	runner := []byte("#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\" > \"$OUT\"\n")
	sum := sha256.Sum256(runner)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("X-Amz-Signature") != "ok" {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		w.Write(runner)
	}))
	defer srv.Close()

	opts := compiletest.Options()
	opts.RunnerURL = srv.URL + "/runner/kfbridge-step?X-Amz-Signature=ok&X-Amz-Date=1"
	opts.RunnerSHA256 = hex.EncodeToString(sum[:])
	out, err := ir.Compile(compiletest.Full(), opts)
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := decode(t, "full", out)
	ex := spec.DeploymentSpec.Executors["exec-load-data"].Container
	env := map[string]string{}
	for _, e := range ex.Env {
		env[e.Name] = e.Value
	}

	// Tool sets: each directory holds only the named tools, so the script must take that path.
	lookup := func(name string) string {
		if name == "python3" {
			if _, err := os.Stat("/usr/bin/python3"); err == nil {
				return "/usr/bin/python3" // not a pyenv shim, which needs more than this PATH
			}
		}
		p, _ := exec.LookPath(name)
		return p
	}
	base := []string{"mktemp", "chmod"}
	sets := map[string][]string{
		"curl+sha256sum": {"curl", "sha256sum"},
		"wget+shasum":    {"wget", "shasum"},
		"python3 only":   {"python3"},
	}
	ran := 0
	for name, tools := range sets {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for _, tool := range append(base, tools...) {
				p := lookup(tool)
				if p == "" {
					if os.Getenv("CI") == "true" {
						t.Fatalf("%s not installed (CI must provide curl, wget, shasum, sha256sum, python3)", tool)
					}
					t.Skipf("%s not installed", tool)
				}
				if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
					t.Fatal(err)
				}
			}
			outFile := filepath.Join(t.TempDir(), "args")
			stderr, code := runStep(t, sh, ex.Command, ex.Args, dir, outFile, env, "")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			got, err := os.ReadFile(outFile)
			if err != nil {
				t.Fatalf("runner did not run: %v (stderr %s)", err, stderr)
			}
			lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
			if !strings.HasSuffix(lines[0], "/kfbridge-step") || strings.Join(lines[1:], "\x00") != strings.Join(ex.Args, "\x00") {
				t.Errorf("runner got argv %q, want kfbridge-step + %q", lines, ex.Args)
			}
			ran++
		})
	}

	t.Run("checksum mismatch", func(t *testing.T) {
		outFile := filepath.Join(t.TempDir(), "args")
		bad := map[string]string{}
		for k, v := range env {
			bad[k] = v
		}
		bad[ir.EnvRunnerSHA256] = strings.Repeat("0", 64)
		stderr, code := runStep(t, sh, ex.Command, ex.Args, "", outFile, bad, os.Getenv("PATH"))
		if code != 1 || !strings.Contains(stderr, "checksum mismatch") {
			t.Errorf("exit %d, stderr %q; want 1 and a checksum message", code, stderr)
		}
		if _, err := os.Stat(outFile); err == nil {
			t.Error("runner ran despite a checksum mismatch")
		}
	})
	t.Run("no download tool", func(t *testing.T) {
		dir := t.TempDir()
		for _, tool := range base {
			if err := os.Symlink(lookup(tool), filepath.Join(dir, tool)); err != nil {
				t.Fatal(err)
			}
		}
		stderr, code := runStep(t, sh, ex.Command, ex.Args, dir, filepath.Join(t.TempDir(), "args"), env, "")
		if code != 127 || !strings.Contains(stderr, "curl, wget, python3") {
			t.Errorf("exit %d, stderr %q; want 127 naming the tools", code, stderr)
		}
	})
	if ran == 0 && os.Getenv("CI") == "true" {
		t.Fatal("no download tool set could be tested")
	}
}

// runStep runs command+args like the KFP launcher does (command and args concatenated), with
// PATH = pathDir (or fullPath when given) and the executor's env plus OUT.
func runStep(t *testing.T, sh string, command, args []string, pathDir, outFile string, env map[string]string, fullPath string) (string, int) {
	t.Helper()
	argv := append(append([]string{}, command...), args...)
	if argv[0] != "sh" {
		t.Fatalf("command starts with %q, want sh", argv[0])
	}
	cmd := exec.Command(sh, argv[1:]...)
	path := pathDir
	if fullPath != "" {
		path = fullPath
	}
	cmd.Env = []string{"PATH=" + path, "OUT=" + outFile, "TMPDIR=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stderr.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return stderr.String(), 0
}

func TestDeterministic(t *testing.T) {
	a, err := ir.Compile(compiletest.Full(), compiletest.Options())
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b, err := ir.Compile(compiletest.Full(), compiletest.Options())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatal("two compilations of the same pipeline differ")
		}
	}
}

func TestErrors(t *testing.T) {
	base := compiletest.Options()
	mod := func(f func(*compile.Options)) compile.Options { o := base; f(&o); return o }
	reserved := compiletest.Full()
	reserved.Parameters = append(reserved.Parameters, pipeline.Parameter{Name: ir.RunIDParam, Type: pipeline.ParamString})
	cycle := compiletest.Full()
	cycle.Nodes[0].Parents = []string{"n-report"}
	for name, tc := range map[string]struct {
		p    *pipeline.Pipeline
		opts compile.Options
		want string
	}{
		"no runner url":   {compiletest.Full(), mod(func(o *compile.Options) { o.RunnerURL = "" }), "runner URL"},
		"bad sha":         {compiletest.Full(), mod(func(o *compile.Options) { o.RunnerSHA256 = "abc" }), "sha256"},
		"no endpoint":     {compiletest.Full(), mod(func(o *compile.Options) { o.Endpoint = "" }), "endpoint"},
		"bad credentials": {compiletest.Full(), mod(func(o *compile.Options) { o.Credentials.Mode = "keys" }), "credentials mode"},
		"reserved param":  {reserved, base, "reserved"},
		"cycle":           {cycle, base, "cycle"},
	} {
		_, err := ir.Compile(tc.p, tc.opts)
		if err == nil || !errors.Is(err, compile.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one wrapping ErrInvalid and mentioning %q", name, err, tc.want)
		}
	}
}

// BenchmarkCompile1000 compiles a generated 1,000-node pipeline (docs/benchmarks.md).
func BenchmarkCompile1000(b *testing.B) { compiletest.BenchCompile1000(b, ir.Compile) }

func flagValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}
