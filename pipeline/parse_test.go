package pipeline

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestPipelineDefaults(t *testing.T) {
	defaults := map[string]any{
		"runtime_image":     "default:1",
		"cos_object_prefix": "/team/churn/",
		"env_vars": []any{map[string]any{"env_var": "A", "value": "default-a"},
			map[string]any{"env_var": "B", "value": "default-b"}},
		"kubernetes_secrets":         []any{map[string]any{"env_var": "PW", "name": "db", "key": "pw"}},
		"mounted_volumes":            []any{map[string]any{"path": "/data", "pvc_name": "shared"}},
		"kubernetes_tolerations":     []any{map[string]any{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}},
		"kubernetes_pod_annotations": []any{map[string]any{"key": "team", "value": "ds"}},
		"kubernetes_pod_labels":      []any{map[string]any{"key": "cost", "value": "1"}},
		"kubernetes_shared_mem_size": map[string]any{"size": 2, "units": "G"},
		"disable_node_caching":       "True",
	}
	plain := gnode("plain", "plain.py")
	delete(plain.props, "runtime_image")
	custom := gnode("own", "own.py").
		with("env_vars", []any{map[string]any{"env_var": "B", "value": "node-b"}, map[string]any{"env_var": "C", "value": "node-c"}}).
		with("mounted_volumes", []any{map[string]any{"path": "/data", "pvc_name": "mine", "read_only": true}}).
		with("kubernetes_pod_labels", []any{map[string]any{"key": "owner", "value": "me"}}).
		with("kubernetes_shared_mem_size", map[string]any{"size": 8}).
		with("disable_node_caching", "False")
	p, issues := load(t, RuntimeKFP, map[string]any{"pipeline_defaults": defaults}, plain, custom)
	// Two unconnected nodes: the singleton warnings are expected, nothing else.
	for _, is := range issues {
		if is.Type != TypeSingletonReference {
			t.Fatalf("unexpected issue %v", is)
		}
	}
	if p.CosObjectPrefix != "team/churn" {
		t.Errorf("cos prefix = %q", p.CosObjectPrefix)
	}
	n := p.Node("plain")
	if n.RuntimeImage != "default:1" || n.SharedMemSizeGB != 2 || n.DisableCaching == nil || !*n.DisableCaching {
		t.Errorf("plain node scalars: %+v", n)
	}
	if want := []EnvVar{{"A", "default-a"}, {"B", "default-b"}}; !slices.Equal(n.Env, want) {
		t.Errorf("plain env = %v, want %v", n.Env, want)
	}
	if len(n.Secrets) != 1 || len(n.Volumes) != 1 || len(n.Tolerations) != 1 || len(n.Annotations) != 1 || len(n.PodLabels) != 1 {
		t.Errorf("plain node lists not defaulted: %+v", n)
	}
	o := p.Node("own")
	if o.RuntimeImage != "registry.example/img:1" || o.SharedMemSizeGB != 8 || o.DisableCaching == nil || *o.DisableCaching {
		t.Errorf("node scalars must win: %+v", o)
	}
	// Node entries win on key collision, keep the default's position; new keys follow.
	if want := []EnvVar{{"A", "default-a"}, {"B", "node-b"}, {"C", "node-c"}}; !slices.Equal(o.Env, want) {
		t.Errorf("merged env = %v, want %v", o.Env, want)
	}
	if want := []Volume{{Path: "/data", PVCName: "mine", ReadOnly: true}}; !slices.Equal(o.Volumes, want) {
		t.Errorf("merged volumes = %v, want %v", o.Volumes, want)
	}
	if want := []KeyValue{{"cost", "1"}, {"owner", "me"}}; !slices.Equal(o.PodLabels, want) {
		t.Errorf("merged labels = %v, want %v", o.PodLabels, want)
	}
}

// Files written by Elyra 3.8-3.11 (format v7) store the Elyra-owned list properties as strings.
func TestV7StringShapes(t *testing.T) {
	doc := `{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":7,"runtime":"kfp",
	  "runtime-config":"old-config","properties":{"name":"old","cos_object_prefix":"legacy/prefix"}},"nodes":[
	  {"id":"a","type":"execution_node","op":"execute-notebook-node","app_data":{"label":"a","component_parameters":{
	    "filename":"a.ipynb","runtime_image":"img:1",
	    "env_vars":["X=1","EMPTY=","URL=http://h/?q=a=b","","X=2"],
	    "kubernetes_secrets":["PW=db-secret:password"],
	    "mounted_volumes":["/mnt/data=data-pvc"],
	    "kubernetes_tolerations":["t1=gpu:Exists::NoSchedule","dedicated:Equal:ml:NoExecute"],
	    "kubernetes_pod_annotations":["team=ds","flag"],
	    "include_subdirectories":"true","cpu":"1.5","gpu":"2","disable_node_caching":"True"}}}]}]}`
	p, issues := Parse([]byte(doc))
	if p == nil || len(issues) != 0 {
		t.Fatalf("Parse: %v\n%s", p != nil, dump(issues))
	}
	if p.RuntimeType != RuntimeKFP || p.RuntimeConfig != "old-config" || p.Name != "old" || p.CosObjectPrefix != "legacy/prefix" {
		t.Errorf("pipeline = %+v", p)
	}
	n := p.Node("a")
	want := &Node{
		ID: "a", Label: "a", Op: OpNotebook, Kind: KindNotebook, Filename: "a.ipynb", RuntimeImage: "img:1",
		IncludeSubdirectories: true,
		Env:                   []EnvVar{{"X", "2"}, {"EMPTY", ""}, {"URL", "http://h/?q=a=b"}}, // the later X wins
		Secrets:               []SecretEnv{{Name: "PW", Secret: "db-secret", Key: "password"}},
		Volumes:               []Volume{{Path: "/mnt/data", PVCName: "data-pvc"}},
		Tolerations: []Toleration{{Key: "gpu", Operator: "Exists", Effect: "NoSchedule"},
			{Key: "dedicated", Operator: "Equal", Value: "ml", Effect: "NoExecute"}},
		Annotations:    []KeyValue{{"team", "ds"}, {"flag", ""}},
		Resources:      Resources{CPU: 1.5, GPU: 2, GPUVendor: "nvidia.com/gpu"},
		DisableCaching: n.DisableCaching,
	}
	if n.DisableCaching == nil || !*n.DisableCaching {
		t.Errorf("disable caching = %v", n.DisableCaching)
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("node =\n%+v\nwant\n%+v", n, want)
	}
}

func TestNamesAndComments(t *testing.T) {
	doc := `{"version":"3.0","primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":8,
	  "properties":{"description":"d"},
	  "ui_data":{"comments":[
	    {"id":"c1","content":"first note","associated_id_refs":[{"node_ref":"a"},{"node_ref":"b"}]},
	    {"id":"c2","content":"  ","associated_id_refs":[{"node_ref":"a"}]},
	    {"id":"c3","content":"second note","associated_id_refs":[{"node_ref":"a"}]}]}},
	  "nodes":[
	  {"id":"a","op":"execute-python-node","app_data":{"component_parameters":{"filename":"dir/a.py"},"ui_data":{"label":"UI label"}}},
	  {"id":"b","op":"execute-python-node","app_data":{"component_parameters":{"filename":"dir/b.py"}}},
	  {"id":"c","op":"execute-python-node","app_data":{"label":"  ","component_parameters":{}}}]}]}`
	p, _ := Parse([]byte(doc))
	if p == nil {
		t.Fatal("no model")
	}
	if p.Name != "untitled" || p.Description != "d" {
		t.Errorf("name %q description %q", p.Name, p.Description)
	}
	if got := []string{p.Nodes[0].Label, p.Nodes[1].Label, p.Nodes[2].Label}; !slices.Equal(got, []string{"UI label", "b.py", "c"}) {
		t.Errorf("labels = %q", got)
	}
	if p.Node("a").Comment != "first note\n\nsecond note" || p.Node("b").Comment != "first note" || p.Node("c").Comment != "" {
		t.Errorf("comments = %q %q %q", p.Node("a").Comment, p.Node("b").Comment, p.Node("c").Comment)
	}
}

// Nested supernodes flatten in place and links through bindings and supernode ports resolve to
// the real nodes.
func TestNestedSupernodes(t *testing.T) {
	node := func(id string, links ...string) string {
		var ls []string
		for _, l := range links {
			ref, port, _ := strings.Cut(l, ":")
			if port == "" {
				port = "outPort"
			}
			ls = append(ls, `{"node_id_ref":"`+ref+`","port_id_ref":"`+port+`"}`)
		}
		return `{"id":"` + id + `","type":"execution_node","op":"execute-python-node","app_data":{"component_parameters":{"filename":"` + id + `.py"}},
		  "inputs":[{"id":"inPort","links":[` + strings.Join(ls, ",") + `]}]}`
	}
	doc := `{"version":"3.0","primary_pipeline":"main","pipelines":[
	 {"id":"main","app_data":{"version":8},"nodes":[` +
		node("start") + `,
	  {"id":"outer","type":"super_node","subflow_ref":{"pipeline_id_ref":"f1"},
	   "inputs":[{"id":"x_inPort","subflow_node_ref":"b1","links":[{"node_id_ref":"start","port_id_ref":"outPort"}]}],
	   "outputs":[{"id":"y_outPort","subflow_node_ref":"b1out"}]},` +
		node("end", "outer:y_outPort", "start") + `]},
	 {"id":"f1","nodes":[{"id":"b1","type":"binding"},` + node("x", "b1") + `,
	  {"id":"inner","type":"super_node","subflow_ref":{"pipeline_id_ref":"f2"},
	   "inputs":[{"id":"y_inPort","subflow_node_ref":"b2","links":[{"node_id_ref":"x","port_id_ref":"outPort"}]}]},` +
		node("after", "inner:y_outPort") + `]},
	 {"id":"f2","nodes":[{"id":"b2","type":"binding"},` + node("y", "b2") + `]}]}`
	p, issues := Parse([]byte(doc))
	if p == nil || HasErrors(issues) {
		t.Fatalf("Parse:\n%s", dump(issues))
	}
	got := map[string][]string{}
	var order []string
	for _, n := range p.Nodes {
		order = append(order, n.ID)
		got[n.ID] = n.Parents
	}
	if want := []string{"start", "x", "y", "after", "end"}; !slices.Equal(order, want) {
		t.Errorf("flattened order = %v, want %v", order, want)
	}
	want := map[string][]string{"start": nil, "x": {"start"}, "y": {"x"}, "after": {"y"}, "end": {"y", "start"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parents = %v, want %v", got, want)
	}
	if anc := Ancestors(p, "end"); !slices.Equal(anc, []string{"start", "x", "y"}) {
		t.Errorf("Ancestors(end) = %v", anc)
	}
}

func TestParseNeverPanicsOnOddShapes(t *testing.T) {
	odd := []string{
		`{"pipelines":[{"app_data":{"version":8},"nodes":[{"id":"a","op":"execute-python-node","app_data":{"component_parameters":{"filename":5,"dependencies":{"x":1},"env_vars":"A=1","cpu":true,"gpu":1e300}}}]}]}`,
		`{"primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":"8"},"nodes":[{"id":"a","op":"execute-r-node","inputs":[{"links":[{"node_id_ref":"a"}]}],"app_data":{"component_parameters":{"filename":"a.r","kubernetes_shared_mem_size":"big"}}}]}]}`,
		`{"primary_pipeline":"p","pipelines":[{"id":"p","app_data":{"version":8.5},"nodes":[]}]}`,
		`{"primary_pipeline":7,"pipelines":[{"id":"p"}]}`,
	}
	for _, d := range odd {
		p, issues := Parse([]byte(d))
		if p == nil && !HasErrors(issues) {
			t.Errorf("no model and no error for %s", d)
		}
		if p != nil {
			_ = Validate(p, t.TempDir())
		}
	}
}

// The editor writes pipeline-level app_data to pipelines[0]; when the primary pipeline is another
// entry without a version, the first entry's app_data applies.
func TestAppDataOnFirstPipeline(t *testing.T) {
	doc := `{"version":"3.0","primary_pipeline":"main","pipelines":[
	  {"id":"other","app_data":{"version":8,"runtime_type":"KUBEFLOW_PIPELINES","properties":{"name":"from-first"}},"nodes":[]},
	  {"id":"main","nodes":[{"id":"a","op":"execute-python-node","app_data":{"component_parameters":{"filename":"a.py"}}}]}]}`
	p, issues := Parse([]byte(doc))
	if p == nil || HasErrors(issues) {
		t.Fatalf("Parse:\n%s", dump(issues))
	}
	if p.Version != 8 || p.Name != "from-first" || p.RuntimeType != RuntimeKFP || len(p.Nodes) != 1 {
		t.Errorf("pipeline = %+v", p)
	}
}
