package pipeline

import (
	"errors"
	"testing"
)

func TestFromFile(t *testing.T) {
	cases := []struct {
		path, kind, op, label, name string
	}{
		{"nb/analysis.ipynb", KindNotebook, OpNotebook, "analysis.ipynb", "analysis"},
		{"./train.py", KindPython, OpPython, "train.py", "train"},
		{"stats/model.R", KindR, OpR, "model.R", "model"},
	}
	for _, c := range cases {
		p, err := FromFile(c.path, FileOptions{RuntimeImage: "img:1", Dependencies: []string{"*.csv", " "},
			Env: []EnvVar{{"A", "1"}}, Resources: Resources{CPU: 1, GPU: 1}, RuntimeConfig: "kfp-dev", RuntimeType: "kfp"})
		if err != nil {
			t.Fatalf("FromFile(%q): %v", c.path, err)
		}
		if len(p.Nodes) != 1 {
			t.Fatalf("nodes = %d", len(p.Nodes))
		}
		n := p.Nodes[0]
		if n.Kind != c.kind || n.Op != c.op || n.Label != c.label || p.Name != c.name || p.Version != CurrentVersion {
			t.Errorf("FromFile(%q) = %+v / %+v", c.path, p, n)
		}
		if len(n.Dependencies) != 1 || n.Resources.GPUVendor != "nvidia.com/gpu" || p.RuntimeType != RuntimeKFP || p.RuntimeConfig != "kfp-dev" {
			t.Errorf("options not applied: %+v %+v", p, n)
		}
	}
	for _, bad := range []string{"", "../x.py", "/abs/x.py", "notes.txt", "dir/"} {
		if _, err := FromFile(bad, FileOptions{}); err == nil {
			t.Errorf("FromFile(%q): want an error", bad)
		}
	}
	if _, err := FromFile("../x.py", FileOptions{}); !errors.Is(err, ErrParentPath) {
		t.Errorf("error = %v, want ErrParentPath", err)
	}
}

// A single-file pipeline goes through the same validation and packaging as a pipeline file.
func TestFromFileValidates(t *testing.T) {
	root := workspace(t, "job/run.py", "job/data.csv")
	p, err := FromFile("job/run.py", FileOptions{RuntimeImage: "img:1", Dependencies: []string{"*.csv"}, RuntimeType: RuntimeKFP})
	if err != nil {
		t.Fatal(err)
	}
	if issues := Validate(p, root); len(issues) != 0 {
		t.Fatalf("issues:\n%s", dump(issues))
	}
	dir, files, err := NodeFiles(root, p.Nodes[0])
	if err != nil || dir != "job" || len(files) != 2 || files[0] != "run.py" || files[1] != "data.csv" {
		t.Errorf("NodeFiles = %q %q %v", dir, files, err)
	}
	p, _ = FromFile("job/missing.py", FileOptions{RuntimeImage: "img:1", Resources: Resources{CPU: 2, CPULimit: 1}})
	issues := Validate(p, root)
	findOne(t, issues, TypeInvalidFilePath, map[string]any{DataNodeID: "node-1", DataPropertyName: "filename"})
	findOne(t, issues, TypeInvalidNodeProperty, map[string]any{DataNodeID: "node-1", DataPropertyName: "cpu_limit"})
}

func TestRebaseFilenames(t *testing.T) {
	p := &Pipeline{Nodes: []*Node{
		{ID: "a", Kind: KindPython, Filename: "a.py"},
		{ID: "b", Kind: KindPython, Filename: "../scripts/setup.py"},
		{ID: "c", Kind: KindPython, Filename: "../../up.py"},
		{ID: "d", Kind: KindPython, Filename: "/abs.py"},
		{ID: "e", Kind: "", Filename: "custom"},
	}}
	RebaseFilenames(p, "pipelines")
	want := []string{"pipelines/a.py", "scripts/setup.py", "../up.py", "/abs.py", "custom"}
	for i, n := range p.Nodes {
		if n.Filename != want[i] {
			t.Errorf("%s: filename = %q, want %q", n.ID, n.Filename, want[i])
		}
	}
	// The producer-consumer fixture's "../scripts/setup.py" is fine once the pipeline sits in a
	// subdirectory, and still an escape at the top level.
	root := workspace(t, "scripts/setup.py")
	issues := Validate(&Pipeline{Nodes: []*Node{{ID: "b", Label: "b", Kind: KindPython, Op: OpPython, Filename: "scripts/setup.py", RuntimeImage: "img:1"}}}, root)
	if len(issues) != 0 {
		t.Errorf("issues:\n%s", dump(issues))
	}
	issues = Validate(&Pipeline{Nodes: []*Node{p.Nodes[2]}}, root)
	findOne(t, issues, TypeInvalidFilePath, map[string]any{DataNodeID: "c", DataPropertyName: "filename", DataValue: "../up.py"})
}
