package argo_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kfbridge/kfbridge/kfp/argo"
	"github.com/kfbridge/kfbridge/kfp/compile"
	"github.com/kfbridge/kfbridge/kfp/compile/compiletest"
	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// cases are the generic pipelines of the Elyra corpus plus compiletest.Full.
func cases(t testing.TB) []compiletest.Case {
	return append(compiletest.Corpus(t), compiletest.Case{Name: "full", Pipeline: compiletest.Full()})
}

// TestGolden compiles every case and compares the workflow (or the error, for corpus files that
// cannot run on KFP, such as nodes without a runtime image) with testdata/<case>.argo.yaml or
// .argo.err. Refresh with: go test ./kfp/argo -update
func TestGolden(t *testing.T) {
	for _, c := range cases(t) {
		t.Run(c.Name, func(t *testing.T) {
			out, err := argo.Compile(c.Pipeline, compiletest.Options())
			golden := filepath.Join("testdata", c.Name+".argo.yaml")
			if err != nil {
				if !errors.Is(err, compile.ErrInvalid) {
					t.Fatalf("error does not wrap compile.ErrInvalid: %v", err)
				}
				golden = filepath.Join("testdata", c.Name+".argo.err")
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
				t.Errorf("%s differs from compiled output (run with -update and review the diff):\n%s", golden, firstDiff(string(want), string(out)))
			}
		})
	}
}

// TestValidWorkflows checks every compiled workflow against both Argo schemas and the KFP v1
// upload rules, with each credential mode and with visualizations off.
func TestValidWorkflows(t *testing.T) {
	irsa := compiletest.Options()
	irsa.Credentials = compile.Credentials{Mode: compile.CredentialsIRSA}
	irsa.PushURL, irsa.PushToken = "", compile.SecretKeyRef{}
	irsa.RunID = "run-20261128-abc"
	irsa.NoVisualizations = true
	compiled := 0
	for _, c := range cases(t) {
		for mode, opts := range map[string]compile.Options{"secret": compiletest.Options(), "irsa": irsa} {
			out, err := argo.Compile(c.Pipeline, opts)
			if err != nil {
				continue // covered by the golden .err files
			}
			compiled++
			name := c.Name + "/" + mode
			validateSchemas(t, name, out)
			for _, p := range uploadProblems(out) {
				t.Errorf("%s: KFP upload would reject: %s", name, p)
			}
		}
	}
	if compiled < 10 {
		t.Fatalf("only %d workflows compiled; the corpus should give at least 5 pipelines in 2 modes", compiled)
	}
}

// TestLintCatchesMistakes makes sure the upload-rule check itself can fail: a hand-broken
// workflow must be reported.
func TestLintCatchesMistakes(t *testing.T) {
	out, err := argo.Compile(compiletest.Full(), compiletest.Options())
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(string) string{
		"unknown template": func(s string) string { return strings.Replace(s, "template: load-data", "template: nowhere", 1) },
		"undeclared input": func(s string) string {
			return strings.Replace(s, "inputs.parameters.epochs", "inputs.parameters.nope", 1)
		},
		"bad kind":           func(s string) string { return strings.Replace(s, "kind: Workflow", "kind: Pod", 1) },
		"unknown dependency": func(s string) string { return strings.Replace(s, "- load-data\n", "- load-dta\n", 1) },
	} {
		broken := edit(string(out))
		if broken == string(out) {
			t.Fatalf("%s: edit did not apply", name)
		}
		if len(uploadProblems([]byte(broken))) == 0 {
			t.Errorf("%s: lint found no problem", name)
		}
	}
	// And the schema check notices a field Argo does not know.
	bad := strings.Replace(string(out), "serviceAccountName: pipeline-runner", "serviceAccountName: pipeline-runner\n  serviceAcountName: typo", 1)
	var unknown []string
	for _, s := range loadSchemas(t) {
		inst := mustJSONValue(t, []byte(bad))
		s.unknownFields(map[string]any{"$ref": "#/definitions/" + workflowDef}, inst, "", &unknown)
	}
	if !slices.Contains(unknown, ".spec.serviceAcountName") {
		t.Errorf("unknown-field check missed a misspelt field: %v", unknown)
	}
	// And the schema validator rejects a structurally wrong workflow.
	wrongType := strings.Replace(string(out), "serviceAccountName: pipeline-runner", "serviceAccountName: [pipeline-runner]", 1)
	for version, s := range loadSchemas(t) {
		if err := s.validator.Validate(mustJSONValue(t, []byte(wrongType))); err == nil {
			t.Errorf("Argo %s schema accepted a list as serviceAccountName", version)
		}
	}
}

// TestProperties checks the Elyra node properties of compiletest.Full in the compiled workflow.
func TestProperties(t *testing.T) {
	opts := compiletest.Options()
	out, err := argo.Compile(compiletest.Full(), opts)
	if err != nil {
		t.Fatal(err)
	}
	wf := decodeWorkflow(t, out)
	byName := map[string]*wfTemplate{}
	for i := range wf.Spec.Templates {
		byName[wf.Spec.Templates[i].Name] = &wf.Spec.Templates[i]
	}
	entry := byName[wf.Spec.Entrypoint]
	if entry == nil || entry.DAG == nil || len(entry.DAG.Tasks) != 5 {
		t.Fatalf("entrypoint %q is not a DAG of 5 tasks", wf.Spec.Entrypoint)
	}
	if wf.Metadata.GenerateName != "full-features-demo-" {
		t.Errorf("generateName = %q", wf.Metadata.GenerateName)
	}

	// Two nodes are labelled "clean": names stay unique.
	report := byName["clean-2"]
	if report == nil {
		t.Fatalf("second 'clean' node did not get the name clean-2; templates: %v", keys(byName))
	}
	// Transitive inputs: report depends on train only, but must receive every ancestor's outputs.
	if got, want := flagValue(report.Container.Args, "--inputs"), "data/raw.csv;data/clean.csv;reports/;data/features.parquet;model/*.pt"; got != want {
		t.Errorf("report --inputs = %q, want %q", got, want)
	}

	var train *wfTemplate
	for _, tp := range wf.Spec.Templates {
		if tp.Metadata.Annotations["kfbridge/node-id"] == "n-train" {
			tp := tp
			train = &tp
		}
	}
	if train == nil {
		t.Fatal("no template for n-train")
	}
	if v := train.Metadata.Labels["kfbridge/node-name"]; len(v) > 63 || !labelValueRe.MatchString(v) || !strings.HasPrefix(v, "Train_model") {
		t.Errorf("node-name label %q is not a sanitized label value", v)
	}
	if got := flagValue(train.Container.Args, "--archive-key"); got != opts.ArchiveKeys["n-train"] {
		t.Errorf("train --archive-key = %q", got)
	}
	if got := flagValue(train.Container.Args, "--pipeline-parameters"); got != "epochs={{inputs.parameters.epochs}};lr={{inputs.parameters.lr}};dry_run={{inputs.parameters.dry_run}};note={{inputs.parameters.note}}" {
		t.Errorf("train --pipeline-parameters = %q", got)
	}
	if got := flagValue(train.Container.Args, "--cos-directory"); got != "team-a/runs/{{workflow.uid}}" {
		t.Errorf("train --cos-directory = %q", got)
	}
	if train.Container.Command[0] != "/kfbridge/bin/kfbridge-step" || len(train.InitContainers) != 1 || train.InitContainers[0].Image != opts.RunnerImage {
		t.Errorf("runner delivery: command %v, init containers %+v", train.Container.Command, train.InitContainers)
	}
	s := string(out)
	for _, want := range []string{
		"amd.com/gpu: \"1\"", `memory: "16.5G"`, `memory: "8G"`, "cpu: \"4\"",
		`sizeLimit: "2G"`, "mountPath: /dev/shm",
		"subPath: ref/v1", "readOnly: true",
		"name: WANDB_API_KEY", "key: api-key",
		"imagePullPolicy: Always", "- name: regcred",
		"pipelines.kubeflow.org/enable_caching: \"false\"", "pipelines.kubeflow.org/max_cache_staleness: P0D",
		"kfbridge/node-user-doc: |-", "example.com/owner: team-a", "team: a",
		"key: dedicated", "effect: NoSchedule",
		"nvidia.com/gpu: \"2\"",
		"name: mlpipeline-ui-metadata", "path: /tmp/kfbridge/mlpipeline-metrics.json",
		"value: \"true\"", // dry_run: override wins over the default
	} {
		if !strings.Contains(s, want) {
			t.Errorf("compiled workflow lacks %q", want)
		}
	}
}

// TestNoCredentials proves that no credential value reaches compiled output: the values sit in
// the process environment (where a careless compiler might pick them up), every case is compiled
// in both credential modes, and credentials must appear only as secretKeyRef env vars.
func TestNoCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", compiletest.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", compiletest.SecretKey)
	t.Setenv("KFBRIDGE_PUSH_TOKEN", compiletest.PushToken)
	irsa := compiletest.Options()
	irsa.Credentials = compile.Credentials{Mode: compile.CredentialsIRSA}
	for _, c := range cases(t) {
		for mode, opts := range map[string]compile.Options{"secret": compiletest.Options(), "irsa": irsa} {
			out, err := argo.Compile(c.Pipeline, opts)
			if err != nil {
				continue
			}
			name := c.Name + "/" + mode
			compiletest.AssertNoSecrets(t, name, out)
			wf := decodeWorkflow(t, out)
			for _, tp := range wf.Spec.Templates {
				if tp.Container == nil {
					continue
				}
				seen := 0
				for _, e := range tp.Container.Env {
					switch e.Name {
					case "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "KFBRIDGE_PUSH_TOKEN":
						seen++
						if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
							t.Errorf("%s: %s: env %s is not a secretKeyRef", name, tp.Name, e.Name)
						}
					}
				}
				if want := map[string]int{"secret": 3, "irsa": 1}[mode]; seen != want {
					t.Errorf("%s: %s: %d credential env vars, want %d", name, tp.Name, seen, want)
				}
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	a, err := argo.Compile(compiletest.Full(), compiletest.Options())
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b, err := argo.Compile(compiletest.Full(), compiletest.Options())
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
	cycle := compiletest.Full()
	cycle.Nodes[0].Parents = []string{"n-report"}
	braces := compiletest.Full()
	braces.Nodes[1].Env = []pipeline.EnvVar{{Name: "X", Value: "{{workflow.parameters.secret}}"}}
	unknownParent := compiletest.Full()
	unknownParent.Nodes[2].Parents = []string{"ghost"}
	unknownParam := compiletest.Full()
	unknownParam.Nodes[2].PipelineParameters = []string{"ghost"}
	custom := compiletest.Full()
	custom.Nodes[0].Kind, custom.Nodes[0].Op = "", "my-catalog:component"
	mod := func(f func(*compile.Options)) compile.Options { o := base; f(&o); return o }
	for name, tc := range map[string]struct {
		p    *pipeline.Pipeline
		opts compile.Options
		want string
	}{
		"no runner image":  {compiletest.Full(), mod(func(o *compile.Options) { o.RunnerImage = "" }), "runner image"},
		"file endpoint":    {compiletest.Full(), mod(func(o *compile.Options) { o.Endpoint = "file:///tmp/store" }), "http:// or https://"},
		"no secret name":   {compiletest.Full(), mod(func(o *compile.Options) { o.Credentials.SecretName = "" }), "secret name"},
		"push no token":    {compiletest.Full(), mod(func(o *compile.Options) { o.PushToken = compile.SecretKeyRef{} }), "push-token"},
		"bad pull policy":  {compiletest.Full(), mod(func(o *compile.Options) { o.Images = map[string]compile.Image{"x": {PullPolicy: "Sometimes"}} }), "pull policy"},
		"cycle":            {cycle, base, "cycle"},
		"template braces":  {braces, base, "{{workflow.parameters.secret}}"},
		"unknown parent":   {unknownParent, base, "unknown node \"ghost\""},
		"unknown param":    {unknownParam, base, "unknown pipeline parameter"},
		"custom component": {custom, base, "not a generic node"},
		"no nodes":         {&pipeline.Pipeline{Name: "empty"}, base, "no nodes"},
	} {
		_, err := argo.Compile(tc.p, tc.opts)
		if err == nil || !errors.Is(err, compile.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one wrapping ErrInvalid and mentioning %q", name, err, tc.want)
		}
	}
}

// BenchmarkCompile1000 compiles a generated 1,000-node pipeline (docs/benchmarks.md).
func BenchmarkCompile1000(b *testing.B) { compiletest.BenchCompile1000(b, argo.Compile) }

func flagValue(args []string, flag string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func firstDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + strconv.Itoa(i+1) + ":\n- " + w + "\n+ " + g
		}
	}
	return "(no line differs)"
}

func mustJSONValue(t *testing.T, y []byte) any {
	t.Helper()
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return v
}
