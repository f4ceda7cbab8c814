package pipeline

import (
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestCorpus loads every real Elyra file in testdata/corpus in a workspace holding the notebooks
// and scripts it names, and checks that it parses into the expected model or yields exactly the
// expected error issues.
func TestCorpus(t *testing.T) {
	type want struct {
		nilPipeline bool
		nodes       int
		runtime     string
		// errors are the expected error issues as "type" or "type/propertyName", sorted.
		errors []string
		// warnings that must be present (others may be too), same format.
		warnings []string
	}
	cases := map[string]want{
		"cli__pipelines__airflow.pipeline": {nodes: 1, runtime: RuntimeAirflow,
			errors: []string{TypeInvalidRuntime}},
		"cli__pipelines__kf_inputpath_parameter.pipeline": {nodes: 3, runtime: RuntimeKFP,
			errors: []string{TypeInvalidNodeType, TypeInvalidNodeType, TypeInvalidNodeType}},
		"cli__pipelines__kfp_3_node_custom.pipeline": {nodes: 3, runtime: RuntimeKFP,
			errors: []string{TypeInvalidNodeType, TypeInvalidNodeType, TypeInvalidNodeType}},
		"cli__pipelines__kubeflow_pipelines.pipeline":                  {nodes: 1, runtime: RuntimeKFP},
		"cli__pipelines__pipeline_with_notebooks.pipeline":             {nodes: 2},
		"cli__pipelines__pipeline_with_notebooks_and_scripts.pipeline": {nodes: 5},
		"cli__pipelines__pipeline_with_one_mount.pipeline": {nodes: 2, runtime: RuntimeKFP,
			// Seed-era files used the notebook op for scripts too: a warning, not an error.
			warnings: []string{TypeInvalidFileType + "/filename"}},
		"cli__pipelines__pipeline_with_one_runtime_image.pipeline": {nodes: 1, runtime: RuntimeKFP},
		"cli__pipelines__pipeline_with_script.pipeline": {nodes: 2,
			warnings: []string{TypeInvalidFileType + "/filename", TypeInvalidNodeProperty + "/runtime_image"}},
		// One node mounts at "mnt/vol3", which Kubernetes rejects (mount paths are absolute).
		"cli__pipelines__pipeline_with_scripts.pipeline": {nodes: 3,
			errors: []string{TypeInvalidNodeProperty + "/mounted_volumes"}},
		"cli__pipelines__pipeline_with_zero_length_pipelines_field.pipeline": {nilPipeline: true,
			errors: []string{TypeInvalidPipeline}},
		"cli__pipelines__pipeline_with_zero_mount.pipeline": {nodes: 2, runtime: RuntimeKFP,
			warnings: []string{TypeInvalidFileType + "/filename"}},
		"cli__pipelines__pipeline_with_zero_nodes.pipeline": {nodes: 0,
			errors: []string{TypeInvalidPipeline}},
		"cli__pipelines__pipeline_without_pipelines_field.pipeline": {nilPipeline: true,
			errors: []string{TypeInvalidPipeline}},
		"cypress__fixtures__generic-test.pipeline": {nodes: 2},
		// The cypress "invalid" pipeline has empty runtime images: fine locally, flagged for KFP.
		"cypress__fixtures__invalid.pipeline": {nodes: 2,
			warnings: []string{TypeInvalidNodeProperty + "/runtime_image"}},
		// One node's file is "../scripts/setup.py": outside the workspace. Its dependencies are
		// not checked on top (one issue per cause).
		"cypress__fixtures__pipelines__producer-consumer.pipeline": {nodes: 5,
			errors: []string{TypeInvalidFilePath + "/filename"}},
		"pipeline__test_pipelines__kfp__kfp-multi-node-generic.pipeline":                {nodes: 3, runtime: RuntimeKFP},
		"pipeline__test_pipelines__kfp__kfp-one-node-generic-elyra-properties.pipeline": {nodes: 1, runtime: RuntimeKFP},
		"pipeline__test_pipelines__kfp__kfp-one-node-generic.pipeline":                  {nodes: 1, runtime: RuntimeKFP},
	}
	files, err := filepath.Glob("testdata/corpus/*.pipeline")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(cases) {
		t.Fatalf("corpus has %d files, table has %d", len(files), len(cases))
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".pipeline"), func(t *testing.T) {
			w, ok := cases[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			if p, _ := Parse(data); p != nil {
				createNamedFiles(t, root, p)
			}
			p, issues := Load(data, root)
			if (p == nil) != w.nilPipeline {
				t.Fatalf("pipeline nil = %v, want %v; issues:\n%s", p == nil, w.nilPipeline, dump(issues))
			}
			var gotErrs []string
			for _, is := range errorsOf(issues) {
				gotErrs = append(gotErrs, issueKey(is))
			}
			slices.Sort(gotErrs)
			wantErrs := slices.Clone(w.errors)
			slices.Sort(wantErrs)
			if !slices.Equal(gotErrs, wantErrs) {
				t.Errorf("errors = %v, want %v; issues:\n%s", gotErrs, wantErrs, dump(issues))
			}
			for _, wantWarn := range w.warnings {
				found := false
				for _, is := range issues {
					found = found || (is.Severity == SeverityWarning && issueKey(is) == wantWarn)
				}
				if !found {
					t.Errorf("missing warning %s; issues:\n%s", wantWarn, dump(issues))
				}
			}
			if p == nil {
				return
			}
			if len(p.Nodes) != w.nodes {
				t.Errorf("nodes = %d, want %d", len(p.Nodes), w.nodes)
			}
			if p.RuntimeType != w.runtime {
				t.Errorf("runtime type = %q, want %q", p.RuntimeType, w.runtime)
			}
			if !HasErrors(issues) {
				// A valid pipeline packages: every node's archive list builds.
				for _, n := range p.Nodes {
					if _, _, err := NodeFiles(root, n); err != nil {
						t.Errorf("NodeFiles(%s): %v", n.ID, err)
					}
				}
				if _, err := TopoOrder(p); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func issueKey(is Issue) string {
	if prop, ok := is.Data[DataPropertyName].(string); ok {
		return is.Type + "/" + prop
	}
	return is.Type
}

// createNamedFiles creates the node files and literal dependencies a pipeline names, as a user's
// workspace would hold them (paths that leave the workspace are left out).
func createNamedFiles(t *testing.T, root string, p *Pipeline) {
	t.Helper()
	for _, n := range p.Nodes {
		if n.Filename == "" || checkRel(n.Filename) != nil {
			continue
		}
		writeFile(t, root, n.Filename)
		for _, d := range n.Dependencies {
			if !hasMeta(d) && checkRel(d) == nil {
				writeFile(t, root, path.Join(path.Dir(n.Filename), d))
			}
		}
	}
}

// TestCorpusContent checks, value by value, what two real Elyra 4 files (every Elyra-owned node
// property; typed parameters and defaults) turn into.
func TestCorpusContent(t *testing.T) {
	read := func(name string) *Pipeline {
		t.Helper()
		data, err := os.ReadFile(filepath.Join("testdata", "corpus", name))
		if err != nil {
			t.Fatal(err)
		}
		p, issues := Parse(data)
		if p == nil || len(issues) != 0 {
			t.Fatalf("%s:\n%s", name, dump(issues))
		}
		return p
	}
	p := read("pipeline__test_pipelines__kfp__kfp-one-node-generic-elyra-properties.pipeline")
	n := p.Nodes[0]
	if p.Name != "kfp-one-node-generic-elyra-properties" || p.Description != "Test pipeline for generic nodes and Elyra properties" || p.RuntimeType != RuntimeKFP {
		t.Errorf("pipeline = %+v", p)
	}
	wantVols := []Volume{{Path: "/test/vol1", PVCName: "test-pvc-1"}, {Path: "/test/vol2", PVCName: "test-pvc-2", SubPath: "sub/path"},
		{Path: "/test/vol3", PVCName: "test-pvc-3", SubPath: "sub/path", ReadOnly: true}}
	wantTols := []Toleration{{Key: "kt1", Operator: "Equal", Value: "3", Effect: "NoExecute"}, {Key: "kt2", Operator: "Exists", Effect: "NoSchedule"},
		{Operator: "Exists"}, {Key: "kt3", Operator: "Equal", Value: "v3"}}
	switch {
	case n.Filename != "a-notebook.ipynb" || n.Kind != KindNotebook || n.RuntimeImage != "tensorflow/tensorflow:2.8.0":
		t.Errorf("node = %+v", n)
	case !slices.Equal(n.Volumes, wantVols):
		t.Errorf("volumes = %+v", n.Volumes)
	case !slices.Equal(n.Tolerations, wantTols):
		t.Errorf("tolerations = %+v", n.Tolerations)
	case !slices.Equal(n.Secrets, []SecretEnv{{Name: "secret_env_var_1", Secret: "secret-1", Key: "secret-key-1"}}):
		t.Errorf("secrets = %+v", n.Secrets)
	case !slices.Equal(n.Annotations, []KeyValue{{"anno-key-1", "anno-value-1"}, {"anno-key-without-value-2", ""}}):
		t.Errorf("annotations = %+v", n.Annotations)
	case !slices.Equal(n.PodLabels, []KeyValue{{"label-key-without-value-1", ""}, {"label-key-2", "label-value-2"}}):
		t.Errorf("labels = %+v", n.PodLabels)
	case n.SharedMemSizeGB != 0.5:
		t.Errorf("shared mem = %v", n.SharedMemSizeGB)
	}
	if issues := Validate(p, workspace(t, "a-notebook.ipynb")); len(issues) != 0 {
		t.Errorf("Validate:\n%s", dump(issues))
	}

	p = read("pipeline__test_pipelines__kfp__kfp-one-node-generic.pipeline")
	n = p.Nodes[0]
	if p.CosObjectPrefix != "my/project" || n.RuntimeImage != "tensorflow/tensorflow:2.8.0" || !slices.Equal(n.PipelineParameters, []string{"param1", "param2"}) {
		t.Errorf("pipeline %+v node %+v", p, n)
	}
	wantParams := []Parameter{
		{Name: "param1", Type: ParamString, Default: "my value"},
		{Name: "param2", Type: ParamInteger, Default: 2.0, Value: 3.0},
		{Name: "param3", Type: ParamString, Default: "not present"},
	}
	if !reflect.DeepEqual(p.Parameters, wantParams) {
		t.Errorf("parameters = %+v", p.Parameters)
	}
	if p.Parameters[1].Effective() != 3.0 {
		t.Errorf("param2 effective = %v", p.Parameters[1].Effective())
	}
}
