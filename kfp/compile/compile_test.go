package compile_test

import (
	"errors"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kfbridge/kfbridge/kfp/compile"
	"github.com/kfbridge/kfbridge/kfp/compile/compiletest"
	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/storage"
)

var (
	dnsLabelRe   = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	labelValueRe = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
)

func TestDNSLabel(t *testing.T) {
	for in, want := range map[string]string{
		"Full Features: Demo":    "full-features-demo",
		"a-notebook.ipynb":       "a-notebook-ipynb",
		"  --Weird__Name--  ":    "weird-name",
		"123 starts with digit":  "node-123-starts-with-digit",
		"":                       "node",
		"äöü":                    "node",
		strings.Repeat("ab", 40): strings.Repeat("ab", 25),
	} {
		got := compile.DNSLabel(in, 50, "node")
		if got != want {
			t.Errorf("DNSLabel(%q) = %q, want %q", in, got, want)
		}
		if !dnsLabelRe.MatchString(got) || len(got) > 50 {
			t.Errorf("DNSLabel(%q) = %q is not a DNS-1123 label of <= 50 chars", in, got)
		}
	}
	// Truncation must not leave a trailing dash.
	if got := compile.DNSLabel(strings.Repeat("a", 49)+" b", 50, "x"); got != strings.Repeat("a", 49) {
		t.Errorf("truncated label = %q", got)
	}
}

func TestLabelValue(t *testing.T) {
	for _, in := range []string{
		"Train model (GPU) — a very long label that goes well beyond sixty-three characters",
		"-leading and trailing-", "ok.value_1", "", "日本語", strings.Repeat("x", 100),
	} {
		got := compile.LabelValue(in)
		if len(got) > 63 || !labelValueRe.MatchString(got) {
			t.Errorf("LabelValue(%q) = %q is not a valid label value", in, got)
		}
	}
	if got := compile.LabelValue("ok.value_1"); got != "ok.value_1" {
		t.Errorf("valid value changed to %q", got)
	}
}

func TestNamerUnique(t *testing.T) {
	n := compile.NewNamer("pipeline")
	long := strings.Repeat("x", 50)
	got := []string{n.Unique("pipeline"), n.Unique("a"), n.Unique("a"), n.Unique("a"), n.Unique(long), n.Unique(long)}
	want := []string{"pipeline-2", "a", "a-2", "a-3", long, strings.Repeat("x", 48) + "-2"}
	if !slices.Equal(got, want) {
		t.Errorf("names = %q, want %q", got, want)
	}
}

// TestRunDirMatchesStorage keeps the compilers' copy of the run-directory layout identical to
// storage.RunDir, which the runner and the server use.
func TestRunDirMatchesStorage(t *testing.T) {
	for _, prefix := range []string{"", "team-a", "/team-a/", "a/b"} {
		for _, run := range []string{"run-1", "{{workflow.uid}}", "{{$.inputs.parameters['kfbridge_run_id']}}"} {
			o := compile.Options{Prefix: prefix}
			if got, want := o.RunDirFor(run), storage.RunDir(prefix, run); got != want {
				t.Errorf("RunDirFor(%q, %q) = %q, storage.RunDir = %q", prefix, run, got, want)
			}
		}
	}
	if got := (compile.Options{RunDir: "fixed/dir"}).RunDirFor("x"); got != "fixed/dir" {
		t.Errorf("explicit RunDir ignored: %q", got)
	}
}

func TestPlanInputsAreTransitive(t *testing.T) {
	pl, err := compile.NewPlan(compiletest.Full())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"n-load":   nil,
		"n-clean":  {"data/raw.csv"},
		"n-feat":   {"data/raw.csv"},
		"n-train":  {"data/raw.csv", "data/clean.csv", "reports/", "data/features.parquet"},
		"n-report": {"data/raw.csv", "data/clean.csv", "reports/", "data/features.parquet", "model/*.pt"},
	}
	for id, w := range want {
		if got := pl.Step(id).Inputs; !slices.Equal(got, w) {
			t.Errorf("%s inputs = %q, want %q", id, got, w)
		}
	}
}

// TestPlanGeneratedDepth checks the bitset ancestor computation on a deep generated DAG against
// a plain recursive walk.
func TestPlanGeneratedDepth(t *testing.T) {
	p := compiletest.Generated(300)
	pl, err := compile.NewPlan(p)
	if err != nil {
		t.Fatal(err)
	}
	var anc func(id string, seen map[string]bool)
	anc = func(id string, seen map[string]bool) {
		for _, par := range p.Node(id).Parents {
			if !seen[par] {
				seen[par] = true
				anc(par, seen)
			}
		}
	}
	for _, n := range p.Nodes {
		seen := map[string]bool{}
		anc(n.ID, seen)
		var want []string
		for _, m := range p.Nodes {
			if seen[m.ID] {
				want = append(want, m.Outputs...)
			}
		}
		if got := pl.Step(n.ID).Inputs; !slices.Equal(got, want) {
			t.Fatalf("%s: inputs %d entries, want %d", n.ID, len(got), len(want))
		}
	}
}

func TestPlanErrors(t *testing.T) {
	dupID := compiletest.Full()
	dupID.Nodes[1].ID = dupID.Nodes[0].ID
	noFile := compiletest.Full()
	noFile.Nodes[0].Filename = ""
	badParam := compiletest.Full()
	badParam.Parameters[0].Name = "not valid"
	badType := compiletest.Full()
	badType.Parameters[0].Type = "List"
	airflow := compiletest.Full()
	airflow.RuntimeType = pipeline.RuntimeAirflow
	self := compiletest.Full()
	self.Nodes[0].Parents = []string{self.Nodes[0].ID}
	for name, p := range map[string]*pipeline.Pipeline{
		"nil": nil, "dup id": dupID, "no file": noFile, "bad param name": badParam,
		"bad param type": badType, "airflow": airflow, "self loop": self,
	} {
		if _, err := compile.NewPlan(p); err == nil || !errors.Is(err, compile.ErrInvalid) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}
}

func TestRunnerArgsFallbackArchive(t *testing.T) {
	pl, err := compile.NewPlan(compiletest.Full())
	if err != nil {
		t.Fatal(err)
	}
	o := compiletest.Options()
	args := pl.RunnerArgs(pl.Step("n-load"), o, "r1", func(n string) string { return "<" + n + ">" })
	joined := strings.Join(args, " ")
	for _, want := range []string{
		"--cos-dependencies-archive load-n-load.tar.gz", "--cos-directory team-a/runs/r1",
		"--pipeline-parameters dataset=<dataset> --parameter-pass-method env", "--file notebooks/load.ipynb",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("args %q lack %q", joined, want)
		}
	}
	if strings.Contains(joined, "--archive-key") {
		t.Errorf("node without archive key got --archive-key: %q", joined)
	}
}

func TestParamString(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		v    any
		want string
	}{
		{pipeline.ParamInteger, float64(10), "10"},
		{pipeline.ParamFloat, 0.5, "0.5"},
		{pipeline.ParamFloat, 1e21, "1000000000000000000000"},
		{pipeline.ParamBool, true, "true"},
		{pipeline.ParamString, "x y", "x y"},
	} {
		if got, ok := compile.ParamString(tc.typ, tc.v); !ok || got != tc.want {
			t.Errorf("ParamString(%s, %v) = %q, want %q", tc.typ, tc.v, got, tc.want)
		}
	}
	if _, ok := compile.ParamString(pipeline.ParamString, nil); ok {
		t.Error("nil value reported as set")
	}
}

// TestDeps keeps the compilers pure: besides the standard library they may import only the
// pipeline model and this package (no storage, no KFP client, no YAML library at run time).
func TestDeps(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}",
		"github.com/kfbridge/kfbridge/kfp/argo", "github.com/kfbridge/kfbridge/kfp/ir").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{
		"github.com/kfbridge/kfbridge/pipeline":    true,
		"github.com/kfbridge/kfbridge/kfp/compile": true,
		"github.com/kfbridge/kfbridge/kfp/argo":    true,
		"github.com/kfbridge/kfbridge/kfp/ir":      true,
	}
	pkgs := strings.Fields(string(out))
	if !slices.Contains(pkgs, "github.com/kfbridge/kfbridge/kfp/argo") {
		t.Fatalf("go list output lacks the compilers themselves: %q", out)
	}
	for _, pkg := range pkgs {
		if !allowed[pkg] {
			t.Errorf("compilers depend on %s", pkg)
		}
	}
}
