package pipeline

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"testing"
)

// Bounded fuzz runs (CI):
//
//	go test ./pipeline -run='^$' -fuzz='^FuzzParse$' -fuzztime=20s
//	go test ./pipeline -run='^$' -fuzz='^FuzzLoad$' -fuzztime=20s
//
// Without -fuzz the seed corpus (real Elyra files, the version files and the snippets below) runs
// as ordinary tests.

var knownTypes = map[string]bool{
	TypeInvalidJSON: true, TypeInvalidRuntime: true, TypeInvalidPipeline: true, TypeInvalidNodeType: true,
	TypeInvalidNodeProperty: true, TypeInvalidFilePath: true, TypeInvalidFileType: true,
	TypeInvalidNodeLabel: true, TypeCircularReference: true, TypeSingletonReference: true,
	TypeInvalidPipelineParameter: true,
}

// fuzzSnippets are small hand-written shapes that reach corners the real files do not.
var fuzzSnippets = []string{
	``, `null`, `[]`, `{}`, `"x"`, `{"pipelines": {}}`, `{"pipelines": [1, null]}`,
	`{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","nodes":[],"app_data":{"version":8}}]}`,
	`{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":8},"nodes":[
	 {"id":"a","type":"execution_node","op":"execute-python-node","app_data":{"component_parameters":{"filename":"a.py","runtime_image":"img:1","dependencies":["*"],"cpu":-1,"memory":"x"}},
	  "inputs":[{"id":"inPort","links":[{"node_id_ref":"a","port_id_ref":"outPort"}]}]}]}]}`,
	`{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":8},"nodes":[
	 {"id":"s","type":"super_node","subflow_ref":{"pipeline_id_ref":"p"}}]}]}`,
	`{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":3,"runtime":"kfp"},"nodes":[
	 {"id":"a","op":"execute-notebook-node","app_data":{"filename":"../x.py","env_vars":["A=1","B"],"dependencies":"/etc/passwd"}},
	 {"id":"b","op":"execute-r-node","app_data":{"filename":"sub/b.r","dependencies":["[","link/*"]},"inputs":[{"links":[{"node_id_ref":"a"}]}]}]}]}`,
	`{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":8,"properties":{"pipeline_parameters":[
	 {"name":"class","default_value":{"type":"Integer","value":"x"},"required":true},{"name":"1a"},{"name":"ok","default_value":{"type":"Bool","value":true}}]}},"nodes":[
	 {"id":"a","op":"execute-python-node","app_data":{"component_parameters":{"filename":"a.py","pipeline_parameters":["ok","nope"]}}}]}]}`,
}

func addSeeds(f *testing.F) {
	f.Helper()
	for _, glob := range []string{"testdata/corpus/*.pipeline", "testdata/versions/*.pipeline"} {
		files, err := filepath.Glob(glob)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	for _, s := range fuzzSnippets {
		f.Add([]byte(s))
	}
}

// checkIssues asserts the invariants every issue list must satisfy.
func checkIssues(t *testing.T, issues []Issue) {
	t.Helper()
	for _, is := range issues {
		if is.Source != IssueSource || is.Severity < SeverityError || is.Severity > SeverityHint || !knownTypes[is.Type] || is.Message == "" {
			t.Fatalf("malformed issue: %+v", is)
		}
		if _, err := json.Marshal(is); err != nil {
			t.Fatalf("issue does not marshal: %v", err)
		}
	}
}

// checkModel asserts the invariants of a parsed model.
func checkModel(t *testing.T, p *Pipeline, issues []Issue) {
	t.Helper()
	if p == nil {
		if !HasErrors(issues) {
			t.Fatalf("Parse returned no pipeline and no error issue: %v", issues)
		}
		return
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatalf("model does not marshal: %v", err)
	}
	var back Pipeline
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("model JSON does not unmarshal: %v", err)
	}
	ids := map[string]bool{}
	for _, n := range p.Nodes {
		if n.ID == "" || ids[n.ID] {
			t.Fatalf("empty or duplicate node id %q", n.ID)
		}
		ids[n.ID] = true
	}
	for _, n := range p.Nodes {
		seen := map[string]bool{}
		for _, par := range n.Parents {
			if !ids[par] || seen[par] {
				t.Fatalf("node %q has unknown or duplicate parent %q", n.ID, par)
			}
			seen[par] = true
		}
	}
	order, err := TopoOrder(p)
	if err == nil {
		pos := map[string]int{}
		for i, n := range order {
			pos[n.ID] = i
		}
		if len(order) != len(p.Nodes) {
			t.Fatalf("TopoOrder returned %d of %d nodes", len(order), len(p.Nodes))
		}
		for _, n := range p.Nodes {
			for _, par := range n.Parents {
				if pos[par] >= pos[n.ID] {
					t.Fatalf("TopoOrder puts parent %q after %q", par, n.ID)
				}
			}
			for _, a := range Ancestors(p, n.ID) {
				if pos[a] >= pos[n.ID] {
					t.Fatalf("ancestor %q of %q comes after it", a, n.ID)
				}
			}
		}
	} else if len(allCycles(p)) == 0 {
		t.Fatalf("TopoOrder failed but no cycle was found: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, issues := Parse(data)
		checkIssues(t, issues)
		checkModel(t, p, issues)
		// Parsing is deterministic.
		p2, issues2 := Parse(data)
		if !reflect.DeepEqual(p, p2) || !reflect.DeepEqual(issues, issues2) {
			t.Fatal("Parse is not deterministic")
		}
	})
}

// fuzzRoot is a workspace with files the seeds name, a hidden dir, a symlink inside the
// workspace and one leading out of it.
func fuzzRoot(f *testing.F) string {
	f.Helper()
	base := f.TempDir()
	root := filepath.Join(base, "ws")
	outside := filepath.Join(base, "outside")
	for _, rel := range []string{"a.py", "b.ipynb", "sub/b.r", "sub/c.py", "sub/deep/d.txt", ".hidden/h.py",
		"etl/prepare.ipynb", "etl/helpers.py", "etl/conf/x.yaml", "train.py", "report.r", "templates/t.html", "publish.py",
		"hello.ipynb", "notebooks/notebook_1.ipynb", "scripts/script_1.py"} {
		writeFile(f, root, rel)
	}
	writeFile(f, outside, "secret.py")
	for link, target := range map[string]string{
		"link":          filepath.Join(root, "sub"),
		"out":           outside,
		"out.py":        filepath.Join(outside, "secret.py"),
		"sub/loop":      root,
		"sub/dangling":  filepath.Join(base, "nope"),
		"sub/inside.py": filepath.Join(root, "a.py"),
	} {
		if err := os.Symlink(target, filepath.Join(root, filepath.FromSlash(link))); err != nil {
			f.Fatal(err)
		}
	}
	return root
}

func FuzzLoad(f *testing.F) {
	addSeeds(f)
	root := fuzzRoot(f)
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, issues := Load(data, root)
		checkIssues(t, issues)
		checkModel(t, p, issues)
		if p == nil {
			return
		}
		// Validation and packaging agree: a generic node without file-path issues packages
		// cleanly, and nothing it packages lies outside the workspace.
		bad := map[string]bool{}
		for _, is := range issues {
			if is.Type == TypeInvalidFilePath || (is.Type == TypeInvalidNodeProperty && is.Data[DataPropertyName] == "filename") {
				if id, ok := is.Data[DataNodeID].(string); ok {
					bad[id] = true
				}
			}
		}
		for _, n := range p.Nodes {
			dir, files, err := NodeFiles(root, n)
			if n.Kind == "" {
				continue
			}
			if err != nil {
				if !bad[n.ID] {
					t.Fatalf("node %q: validation found no path issue but NodeFiles failed: %v", n.ID, err)
				}
				continue
			}
			if bad[n.ID] {
				t.Fatalf("node %q: validation reported a path issue but NodeFiles succeeded", n.ID)
			}
			if len(files) == 0 || files[0] != path.Base(path.Clean(n.Filename)) {
				t.Fatalf("node %q: files %v do not start with the node file", n.ID, files)
			}
			for _, rel := range files {
				abs, err := Confine(root, path.Join(dir, rel))
				if err != nil {
					t.Fatalf("node %q: packaged file %q is not confined: %v", n.ID, rel, err)
				}
				real, err := filepath.EvalSymlinks(abs)
				if err != nil || !within(realRoot, real) {
					t.Fatalf("node %q: packaged file %q resolves outside the workspace (%v)", n.ID, rel, err)
				}
				if st, err := os.Stat(abs); err != nil || !st.Mode().IsRegular() {
					t.Fatalf("node %q: packaged file %q is not a regular file", n.ID, rel)
				}
			}
		}
		if !HasErrors(issues) {
			if _, err := TopoOrder(p); err != nil {
				t.Fatalf("no error issue but TopoOrder fails: %v", err)
			}
		}
	})
}
