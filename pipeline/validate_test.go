package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCycleSingle(t *testing.T) {
	// A node linked to itself.
	p, issues := load(t, "", nil, gnode("a", "a.py", "a"), gnode("b", "b.py", "a"))
	is := findOne(t, issues, TypeCircularReference, map[string]any{DataNodeID: "a", DataNodeName: "a"})
	if is.Severity != SeverityError {
		t.Errorf("severity = %d, want error", is.Severity)
	}
	if got := is.Data[DataNodeIDList].([]string); strings.Join(got, ",") != "a" {
		t.Errorf("nodeIDList = %v, want [a]", got)
	}
	if _, err := TopoOrder(p); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("TopoOrder error = %v, want a cycle error", err)
	}
}

func TestCycleDouble(t *testing.T) {
	// a -> b -> a, with c hanging off the cycle, and a separate acyclic d -> e.
	p, issues := load(t, "", nil,
		gnode("a", "a.py", "b"), gnode("b", "b.py", "a"), gnode("c", "c.py", "b"),
		gnode("d", "d.py"), gnode("e", "e.py", "d"))
	cyc := find(issues, TypeCircularReference)
	if len(cyc) != 1 {
		t.Fatalf("want one circularReference, got:\n%s", dump(issues))
	}
	is := findOne(t, issues, TypeCircularReference, map[string]any{DataNodeID: "a", DataNodeIDList: []string{"a", "b"}})
	if is.Severity != SeverityError || !strings.Contains(is.Message, "a -> b -> a") {
		t.Errorf("issue = %+v", is)
	}
	_, err := TopoOrder(p)
	if err == nil || !strings.Contains(err.Error(), "a -> b -> a") {
		t.Errorf("TopoOrder error = %v, want one naming a and b", err)
	}

	// Two separate knots are two issues.
	_, issues = load(t, "", nil, gnode("a", "a.py", "b"), gnode("b", "b.py", "a"),
		gnode("c", "c.py", "d"), gnode("d", "d.py", "c"))
	findOne(t, issues, TypeCircularReference, map[string]any{DataNodeIDList: []string{"a", "b"}})
	findOne(t, issues, TypeCircularReference, map[string]any{DataNodeIDList: []string{"c", "d"}})
}

func TestSingleton(t *testing.T) {
	_, issues := load(t, "", nil, gnode("a", "a.py"), gnode("b", "b.py", "a"), gnode("lonely", "c.py"))
	if got := find(issues, TypeSingletonReference); len(got) != 1 {
		t.Fatalf("want one singleton issue, got:\n%s", dump(issues))
	}
	is := findOne(t, issues, TypeSingletonReference, map[string]any{DataNodeID: "lonely", DataNodeName: "lonely"})
	if is.Severity != SeverityWarning {
		t.Errorf("severity = %d, want warning", is.Severity)
	}
	// A one-node pipeline has nothing to connect to.
	_, issues = load(t, "", nil, gnode("a", "a.py"))
	if got := find(issues, TypeSingletonReference); len(got) != 0 {
		t.Errorf("one-node pipeline: unexpected %v", got)
	}
}

func TestMissingFiles(t *testing.T) {
	data := v8doc(t, "", nil, gnode("a", "nb/missing.ipynb"),
		gnode("b", "b.py", "a").with("dependencies", []any{"lib.py", "data"}))
	root := workspace(t, "b.py")
	_, issues := Load(data, root)
	is := findOne(t, issues, TypeInvalidFilePath, map[string]any{DataNodeID: "a", DataNodeName: "a",
		DataPropertyName: "filename", DataValue: "nb/missing.ipynb"})
	if is.Severity != SeverityError || !strings.Contains(is.Message, "does not exist") {
		t.Errorf("issue = %+v", is)
	}
	findOne(t, issues, TypeInvalidFilePath, map[string]any{DataNodeID: "b", DataPropertyName: "dependencies", DataValue: "lib.py"})
	findOne(t, issues, TypeInvalidFilePath, map[string]any{DataNodeID: "b", DataPropertyName: "dependencies", DataValue: "data"})

	// A directory where the file should be.
	if err := os.MkdirAll(filepath.Join(root, "dir.py"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, issues = Load(v8doc(t, "", nil, gnode("d", "dir.py")), root)
	findOne(t, issues, TypeInvalidFilePath, map[string]any{DataNodeID: "d", DataPropertyName: "filename"})

	// No filename at all.
	n := gnode("e", "e.py")
	delete(n.props, "filename")
	_, issues = Load(v8doc(t, "", nil, n), root)
	findOne(t, issues, TypeInvalidNodeProperty, map[string]any{DataNodeID: "e", DataPropertyName: "filename"})
}

func TestPathEscapes(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "ws")
	writeFile(t, root, "ok.py")
	writeFile(t, base, "x.py")
	writeFile(t, base, "secret.txt")
	if err := os.Symlink(filepath.Join(base, "x.py"), filepath.Join(root, "link.py")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(base, filepath.Join(root, "up")); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ file, why string }{
		{"../x.py", ".."},
		{"/etc/x.py", "absolute"},
		{"sub/../../x.py", ".."},
		{"link.py", "outside the workspace"},
		{"up/x.py", "outside the workspace"},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			_, issues := Load(v8doc(t, "", nil, gnode("n1", c.file)), root)
			is := findOne(t, issues, TypeInvalidFilePath, map[string]any{DataNodeID: "n1", DataNodeName: "n1",
				DataPropertyName: "filename", DataValue: c.file})
			if is.Severity != SeverityError || !strings.Contains(is.Message, c.why) {
				t.Errorf("issue = %v, want an error mentioning %q", is, c.why)
			}
		})
	}
	for _, dep := range []string{"../secret.txt", "/etc/passwd", "up/secret.txt", "up/*.txt"} {
		t.Run("dependency "+dep, func(t *testing.T) {
			_, issues := Load(v8doc(t, "", nil, gnode("n1", "ok.py").with("dependencies", []any{dep})), root)
			findOne(t, issues, TypeInvalidFilePath, map[string]any{DataNodeID: "n1", DataPropertyName: "dependencies", DataValue: dep})
		})
	}
}

func TestBadGlobs(t *testing.T) {
	root := workspace(t, "nb/a.ipynb", "nb/data/x.csv", "nb/conf/a.yaml")
	cases := []struct {
		dep, msg string
	}{
		{"*.parquet", "matches no file"},
		{"data/*.txt", "matches no file"},
		{"missing/*", "matches no file"},
		{"[", "not a valid glob"},
		{"conf/[a-", "not a valid glob"},
	}
	for _, c := range cases {
		t.Run(c.dep, func(t *testing.T) {
			_, issues := Load(v8doc(t, "", nil, gnode("g", "nb/a.ipynb").with("dependencies", []any{"data/*.csv", c.dep})), root)
			is := findOne(t, issues, TypeInvalidFilePath, map[string]any{DataNodeID: "g", DataNodeName: "g",
				DataPropertyName: "dependencies", DataValue: c.dep})
			if !strings.Contains(is.Message, c.msg) {
				t.Errorf("message %q does not contain %q", is.Message, c.msg)
			}
			if n := len(find(issues, TypeInvalidFilePath)); n != 1 {
				t.Errorf("the matching glob data/*.csv was reported too:\n%s", dump(issues))
			}
		})
	}
}

func TestFileTypes(t *testing.T) {
	_, issues := load(t, "", nil, gnode("t", "notes.txt"))
	is := findOne(t, issues, TypeInvalidFileType, map[string]any{DataNodeID: "t", DataPropertyName: "filename", DataValue: "notes.txt"})
	if is.Severity != SeverityError {
		t.Errorf("severity = %d", is.Severity)
	}
	// Op and extension disagree (seed-era files): the extension decides, with a warning.
	n := gnode("m", "m.py")
	n.op = OpNotebook
	p, issues := load(t, "", nil, n)
	is = findOne(t, issues, TypeInvalidFileType, map[string]any{DataNodeID: "m", DataPropertyName: "filename"})
	if is.Severity != SeverityWarning || p.Node("m").Kind != KindPython {
		t.Errorf("issue %v, kind %q", is, p.Node("m").Kind)
	}
}

func TestInvalidResources(t *testing.T) {
	cases := []struct {
		name  string
		props map[string]any
		prop  string
		value any
	}{
		{"negative cpu", map[string]any{"cpu": -1}, "cpu", -1.0},
		{"negative memory", map[string]any{"memory": -4}, "memory", -4.0},
		{"negative gpu", map[string]any{"gpu": -1}, "gpu", -1.0},
		{"negative cpu limit", map[string]any{"cpu_limit": -2}, "cpu_limit", -2.0},
		{"cpu limit below request", map[string]any{"cpu": 4, "cpu_limit": 2}, "cpu_limit", 2.0},
		{"memory limit below request", map[string]any{"memory": 16, "memory_limit": 8}, "memory_limit", 8.0},
		{"cpu not a number", map[string]any{"cpu": "lots"}, "cpu", "lots"},
		{"memory as object", map[string]any{"memory": map[string]any{"size": 1}}, "memory", nil},
		{"fractional gpu", map[string]any{"gpu": 1.5}, "gpu", 1.5},
		{"negative shared memory", map[string]any{"kubernetes_shared_mem_size": map[string]any{"size": -1}}, "kubernetes_shared_mem_size", -1.0},
		{"bad gpu vendor", map[string]any{"gpu": 1, "gpu_vendor": "NVIDIA GPU"}, "gpu_vendor", "NVIDIA GPU"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := gnode("r", "r.py")
			for k, v := range c.props {
				n = n.with(k, v)
			}
			_, issues := load(t, RuntimeKFP, nil, n)
			want := map[string]any{DataNodeID: "r", DataNodeName: "r", DataPropertyName: c.prop}
			if c.value != nil {
				want[DataValue] = c.value
			}
			is := findOne(t, issues, TypeInvalidNodeProperty, want)
			if is.Severity != SeverityError {
				t.Errorf("severity = %d", is.Severity)
			}
		})
	}
	// Valid values produce no resource issue, limits equal to requests included; numeric strings
	// (seed-era files) are read as numbers.
	p, issues := load(t, RuntimeKFP, nil, gnode("ok", "ok.py").with("cpu", 2).with("cpu_limit", 2).
		with("memory", "8").with("memory_limit", 16).with("gpu", 1))
	if len(issues) != 0 {
		t.Fatalf("unexpected issues:\n%s", dump(issues))
	}
	if r := p.Node("ok").Resources; r.CPU != 2 || r.MemoryGB != 8 || r.MemoryLimitGB != 16 || r.GPU != 1 || r.GPUVendor != "nvidia.com/gpu" {
		t.Errorf("resources = %+v", r)
	}
}

func TestBadParameterNames(t *testing.T) {
	param := func(name string) map[string]any {
		return map[string]any{"name": name, "default_value": map[string]any{"type": "String", "value": "x"}}
	}
	cases := []struct{ name, msg string }{
		{"1abc", "not a valid Python identifier"},
		{"my-param", "not a valid Python identifier"},
		{"with space", "not a valid Python identifier"},
		{"class", "Python keyword"},
		{"None", "Python keyword"},
		{"lambda", "Python keyword"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			props := map[string]any{"pipeline_parameters": []any{param("good_one"), param(c.name)}}
			_, issues := load(t, RuntimeKFP, props, gnode("a", "a.py"))
			is := findOne(t, issues, TypeInvalidPipelineParameter, map[string]any{DataParameterName: c.name})
			if is.Severity != SeverityError || !strings.Contains(is.Message, c.msg) {
				t.Errorf("issue = %v, want an error saying %q", is, c.msg)
			}
			if n := len(find(issues, TypeInvalidPipelineParameter)); n != 1 {
				t.Errorf("want only %q reported:\n%s", c.name, dump(issues))
			}
		})
	}
	t.Run("empty and duplicate", func(t *testing.T) {
		props := map[string]any{"pipeline_parameters": []any{param(""), param("p"), param("p")}}
		_, issues := load(t, RuntimeKFP, props, gnode("a", "a.py"))
		findOne(t, issues, TypeInvalidPipelineParameter, map[string]any{DataParameterName: ""})
		is := findOne(t, issues, TypeInvalidPipelineParameter, map[string]any{DataParameterName: "p", "index": 2})
		if !strings.Contains(is.Message, "more than once") {
			t.Errorf("message = %q", is.Message)
		}
	})
	t.Run("types and required", func(t *testing.T) {
		props := map[string]any{"pipeline_parameters": []any{
			map[string]any{"name": "n", "default_value": map[string]any{"type": "Integer", "value": 2.5}},
			map[string]any{"name": "f", "default_value": map[string]any{"type": "Float", "value": "abc"}},
			map[string]any{"name": "b", "default_value": map[string]any{"type": "Bool", "value": "maybe"}},
			map[string]any{"name": "u", "default_value": map[string]any{"type": "Complex", "value": 1}},
			map[string]any{"name": "r", "required": true, "default_value": map[string]any{"type": "String", "value": ""}},
			map[string]any{"name": "ok", "required": true, "default_value": map[string]any{"type": "Integer", "value": 3}},
		}}
		p, issues := load(t, RuntimeKFP, props, gnode("a", "a.py").with("pipeline_parameters", []any{"ok", "undefined"}))
		findOne(t, issues, TypeInvalidPipelineParameter, map[string]any{DataParameterName: "n", DataValue: 2.5})
		findOne(t, issues, TypeInvalidPipelineParameter, map[string]any{DataParameterName: "f", DataValue: "abc"})
		findOne(t, issues, TypeInvalidPipelineParameter, map[string]any{DataParameterName: "b", DataValue: "maybe"})
		findOne(t, issues, TypeInvalidPipelineParameter, map[string]any{DataParameterName: "u", DataValue: "Complex"})
		is := findOne(t, issues, TypeInvalidPipelineParameter, map[string]any{DataParameterName: "r"})
		if !strings.Contains(is.Message, "required") {
			t.Errorf("message = %q", is.Message)
		}
		findOne(t, issues, TypeInvalidNodeProperty, map[string]any{DataNodeID: "a", DataPropertyName: "pipeline_parameters", DataValue: "undefined"})
		if len(find(issues, TypeInvalidPipelineParameter)) != 5 {
			t.Errorf("parameter ok must not be reported:\n%s", dump(issues))
		}
		if got := p.Parameters[5]; got.Name != "ok" || got.Type != ParamInteger || got.Effective() != 3.0 {
			t.Errorf("parameter = %+v", got)
		}
	})
}

func TestDuplicateLabels(t *testing.T) {
	a, b, c := gnode("a", "a.py"), gnode("b", "b.py", "a"), gnode("c", "c.py", "b")
	a.label, b.label, c.label = "train", "Train", "evaluate"
	_, issues := load(t, "", nil, a, b, c)
	if n := len(find(issues, TypeInvalidNodeLabel)); n != 1 {
		t.Fatalf("want one label issue, got:\n%s", dump(issues))
	}
	is := findOne(t, issues, TypeInvalidNodeLabel, map[string]any{DataNodeID: "b", DataNodeName: "Train",
		DataPropertyName: "label", DataValue: "Train", DataNodeIDList: []string{"a", "b"}})
	if is.Severity != SeverityWarning {
		t.Errorf("severity = %d", is.Severity)
	}
	// Labels fall back to the file name, so two unlabeled nodes on the same file collide too.
	x, y := gnode("x", "same.py"), gnode("y", "same.py", "x")
	x.label, y.label = "", ""
	p, issues := load(t, "", nil, x, y)
	if p.Node("x").Label != "same.py" {
		t.Errorf("label = %q, want the file's base name", p.Node("x").Label)
	}
	findOne(t, issues, TypeInvalidNodeLabel, map[string]any{DataNodeID: "y", DataValue: "same.py"})

	long := gnode("l", "l.py")
	long.label = strings.Repeat("x", 70)
	_, issues = load(t, "", nil, long)
	findOne(t, issues, TypeInvalidNodeLabel, map[string]any{DataNodeID: "l"})
}

func TestUnsupportedRuntimeAndComponents(t *testing.T) {
	_, issues := load(t, RuntimeAirflow, nil, gnode("a", "a.py"))
	is := findOne(t, issues, TypeInvalidRuntime, map[string]any{DataRuntime: RuntimeAirflow})
	if is.Severity != SeverityError || !strings.Contains(is.Message, "not supported") {
		t.Errorf("issue = %v", is)
	}
	_, issues = load(t, "SPARK", nil, gnode("a", "a.py"))
	findOne(t, issues, TypeInvalidRuntime, map[string]any{DataRuntime: "SPARK"})

	custom := tnode{id: "c", op: "elyra-kfp-examples-catalog:a08014f9252f", label: "Download",
		props: map[string]any{"url": map[string]any{"widget": "string", "value": "https://example.com"}}}
	p, issues := load(t, RuntimeKFP, nil, custom)
	is = findOne(t, issues, TypeInvalidNodeType, map[string]any{DataNodeID: "c", DataNodeName: "Download",
		DataValue: "elyra-kfp-examples-catalog:a08014f9252f"})
	if !strings.Contains(is.Message, "not supported") || p.Node("c").Kind != "" {
		t.Errorf("issue = %v, kind %q", is, p.Node("c").Kind)
	}
}

func TestRuntimeImage(t *testing.T) {
	n := gnode("a", "a.py")
	delete(n.props, "runtime_image")
	_, issues := load(t, RuntimeKFP, nil, n)
	is := findOne(t, issues, TypeInvalidNodeProperty, map[string]any{DataNodeID: "a", DataPropertyName: "runtime_image"})
	if is.Severity != SeverityError {
		t.Errorf("KFP pipeline without image: severity %d, want error", is.Severity)
	}
	// Generic pipeline for the local runtime: only a warning.
	_, issues = load(t, "", nil, n)
	is = findOne(t, issues, TypeInvalidNodeProperty, map[string]any{DataNodeID: "a", DataPropertyName: "runtime_image"})
	if is.Severity != SeverityWarning {
		t.Errorf("generic pipeline without image: severity %d, want warning", is.Severity)
	}
	// Pipeline defaults supply it.
	_, issues = load(t, RuntimeKFP, map[string]any{"pipeline_defaults": map[string]any{"runtime_image": "img:2"}}, n)
	if len(issues) != 0 {
		t.Errorf("unexpected issues:\n%s", dump(issues))
	}
	_, issues = load(t, RuntimeKFP, nil, gnode("b", "b.py").with("runtime_image", "Not An Image!"))
	findOne(t, issues, TypeInvalidNodeProperty, map[string]any{DataNodeID: "b", DataPropertyName: "runtime_image", DataValue: "Not An Image!"})
}

func TestKubernetesProperties(t *testing.T) {
	cases := []struct {
		prop  string
		value any
		bad   any
	}{
		{"env_vars", []any{map[string]any{"env_var": "1BAD", "value": "x"}}, "1BAD"},
		{"kubernetes_secrets", []any{map[string]any{"env_var": "PW", "name": "Bad_Secret", "key": "k"}}, "Bad_Secret"},
		{"kubernetes_secrets", []any{map[string]any{"env_var": "PW", "name": "secret", "key": "bad key"}}, "bad key"},
		{"mounted_volumes", []any{map[string]any{"path": "relative", "pvc_name": "pvc"}}, "relative"},
		{"mounted_volumes", []any{map[string]any{"path": "/mnt", "pvc_name": "PVC!"}}, "PVC!"},
		{"mounted_volumes", []any{map[string]any{"path": "/mnt", "pvc_name": "pvc", "sub_path": "../x"}}, "../x"},
		{"kubernetes_tolerations", []any{map[string]any{"key": "k", "operator": "Like"}}, "Like"},
		{"kubernetes_tolerations", []any{map[string]any{"key": "k", "operator": "Exists", "value": "v"}}, "v"},
		{"kubernetes_tolerations", []any{map[string]any{"key": "k", "operator": "Equal", "effect": "Never"}}, "Never"},
		{"kubernetes_pod_annotations", []any{map[string]any{"key": "bad key", "value": "v"}}, "bad key"},
		{"kubernetes_pod_labels", []any{map[string]any{"key": "team", "value": "not valid!"}}, "not valid!"},
		{"outputs", []any{"../escape.csv"}, "../escape.csv"},
		{"outputs", []any{"/abs.csv"}, "/abs.csv"},
	}
	for _, c := range cases {
		t.Run(c.prop+" "+c.bad.(string), func(t *testing.T) {
			_, issues := load(t, RuntimeKFP, nil, gnode("k", "k.py").with(c.prop, c.value))
			findOne(t, issues, TypeInvalidNodeProperty, map[string]any{DataNodeID: "k", DataPropertyName: c.prop, DataValue: c.bad})
			if HasErrors(issues) != true {
				t.Error("want an error")
			}
		})
	}
}

func TestVersionsAndStructure(t *testing.T) {
	cases := []struct {
		name, doc string
		typ       string
		nilModel  bool
	}{
		{"invalid JSON", `{"pipelines": [`, TypeInvalidJSON, true},
		{"trailing data", `{} {}`, TypeInvalidJSON, true},
		{"not an object", `[1,2]`, TypeInvalidPipeline, true},
		{"too old", `{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":2},"nodes":[]}]}`, TypeInvalidPipeline, true},
		{"too new", `{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":9},"nodes":[]}]}`, TypeInvalidPipeline, true},
		{"no version", `{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{},"nodes":[]}]}`, TypeInvalidPipeline, true},
		{"wrong primary", `{"version":"3.0","primary_pipeline":"x","pipelines":[{"id":"p","app_data":{"version":8},"nodes":[]}]}`, TypeInvalidPipeline, true},
		{"schema version", `{"version":"2.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":8},"nodes":[{"id":"a","op":"execute-python-node","app_data":{"component_parameters":{"filename":"a.py"}}}]}]}`, TypeInvalidPipeline, false},
		{"model node", `{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":8},"nodes":[{"id":"m","type":"model_node"}]}]}`, TypeInvalidNodeType, false},
		{"duplicate id", `{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":8},"nodes":[
			{"id":"a","op":"execute-python-node","app_data":{"component_parameters":{"filename":"a.py"}}},
			{"id":"a","op":"execute-python-node","app_data":{"component_parameters":{"filename":"b.py"}}}]}]}`, TypeInvalidPipeline, false},
		{"supernode loop", `{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":8},"nodes":[
			{"id":"s","type":"super_node","subflow_ref":{"pipeline_id_ref":"q"}}]},{"id":"q","nodes":[{"id":"t","type":"super_node","subflow_ref":{"pipeline_id_ref":"q"}}]}]}`, TypeCircularReference, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, issues := Parse([]byte(c.doc))
			if (p == nil) != c.nilModel {
				t.Errorf("model nil = %v, want %v", p == nil, c.nilModel)
			}
			got := find(errorsOf(issues), c.typ)
			if len(got) == 0 {
				t.Fatalf("want an error of type %s, got:\n%s", c.typ, dump(issues))
			}
		})
	}
}

func TestDanglingLink(t *testing.T) {
	doc := `{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":8},"nodes":[
		{"id":"a","op":"execute-python-node","app_data":{"component_parameters":{"filename":"a.py"}},"inputs":[{"id":"inPort","links":[{"node_id_ref":"ghost","port_id_ref":"outPort"}]}]}]}]}`
	p, issues := Parse([]byte(doc))
	is := findOne(t, issues, TypeInvalidPipeline, map[string]any{DataNodeID: "a", DataValue: "ghost"})
	if is.Severity != SeverityWarning || len(p.Node("a").Parents) != 0 {
		t.Errorf("issue %v, parents %v", is, p.Node("a").Parents)
	}
}

func TestImageReferences(t *testing.T) {
	good := []string{"python", "python:3.11-slim", "tensorflow/tensorflow:2.8.0-gpu", "docker.io/library/python:3.11",
		"localhost:5000/img", "my-registry.example.com:443/team/sub/img:v1.2.3_RC1",
		"quay.io/org/img@sha256:" + strings.Repeat("ab", 32), "quay.io/org/img:1.0@sha256:" + strings.Repeat("0f", 32),
		"elyra/elyra-example-anaconda-py3:latest", "registry.example/a__b/c--d:x"}
	bad := []string{"Python", "img:", "img:tag with space", "-img", "img/", "img@sha256:xyz", "http://registry/img", "img::1"}
	for _, img := range good {
		if !imageRE.MatchString(img) {
			t.Errorf("valid image %q rejected", img)
		}
	}
	for _, img := range bad {
		if imageRE.MatchString(img) {
			t.Errorf("invalid image %q accepted", img)
		}
	}
}

func TestDuplicateOutputs(t *testing.T) {
	_, issues := load(t, "", nil,
		gnode("a", "a.py").with("outputs", []any{"data/out.csv", "model.bin"}),
		gnode("b", "b.py", "a").with("outputs", []any{"./data/out.csv", "other.csv"}))
	is := findOne(t, issues, TypeInvalidNodeProperty, map[string]any{DataNodeID: "b", DataPropertyName: "outputs",
		DataValue: "./data/out.csv", DataNodeIDList: []string{"a", "b"}})
	if is.Severity != SeverityWarning {
		t.Errorf("severity = %d", is.Severity)
	}
	if n := len(find(issues, TypeInvalidNodeProperty)); n != 1 {
		t.Errorf("want one issue:\n%s", dump(issues))
	}
}
