package kfptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// Template kinds of an uploaded package.
const (
	TemplateArgo = "argo" // v1: Argo Workflow
	TemplateIR   = "ir"   // v2: IR PipelineSpec
)

// template is a parsed, validated pipeline package.
type template struct {
	kind   string
	doc    map[string]any // the Workflow or the PipelineSpec
	params []string       // declared parameter names
	// platform is the IR package's optional second document (the Kubernetes PlatformSpec).
	platform map[string]any
}

// irTopLevel are PipelineSpec's fields; protojson rejects anything else (both spellings accepted).
var irTopLevel = map[string]bool{
	"pipelineInfo": true, "pipeline_info": true, "deploymentSpec": true, "deployment_spec": true,
	"sdkVersion": true, "sdk_version": true, "schemaVersion": true, "schema_version": true,
	"components": true, "root": true, "defaultPipelineRoot": true, "default_pipeline_root": true,
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// parseTemplate applies KFP's upload checks (kfp.md §1.2, §2.1): Argo Workflow with apiVersion
// argoproj.io/v1alpha1 and kind Workflow plus a basic lint, or IR with schemaVersion 2.1.0,
// pipelineInfo.name and root; anything else is "unknown template format".
func parseTemplate(content []byte) (*template, error) {
	var docs []map[string]any
	for _, part := range docSep.Split(string(content), -1) {
		if strings.TrimSpace(part) == "" {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(part))
		if err != nil {
			return nil, fmt.Errorf("invalid YAML: %v", err)
		}
		m, err := decodeObject(bytes.NewReader(js))
		if err != nil || m == nil {
			return nil, fmt.Errorf("pipeline file is not a YAML/JSON object")
		}
		docs = append(docs, m)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("empty pipeline file")
	}
	first := docs[0]
	if av := str(first["apiVersion"]); strings.HasPrefix(av, "argoproj.io/") && str(first["kind"]) == "Workflow" {
		if len(docs) > 1 {
			return nil, fmt.Errorf("an Argo workflow file must hold one document")
		}
		if av != "argoproj.io/v1alpha1" {
			return nil, fmt.Errorf("unsupported argo version %q, expected argoproj.io/v1alpha1", av)
		}
		return lintWorkflow(first)
	}
	if _, ok := first["pipelineInfo"]; ok || first["root"] != nil || first["schemaVersion"] != nil {
		t, err := checkIR(first)
		if err == nil && len(docs) > 1 {
			t.platform = docs[1]
		}
		return t, err
	}
	return nil, fmt.Errorf("unknown template format: neither an Argo Workflow nor a KFP IR PipelineSpec")
}

// normalizeNumbers turns json.Number into float64 (integers stay exact up to 2^53).
// decodeObject decodes the first JSON value read from r as an object (nil for JSON null) with
// its numbers passed through normalizeNumbers, as every pipeline document the fake reads is.
func decodeObject(r io.Reader) (map[string]any, error) {
	var m map[string]any
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	return normalizeNumbers(m).(map[string]any), nil
}

func normalizeNumbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeNumbers(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalizeNumbers(e)
		}
		return x
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return v
}

// lintWorkflow is the part of Argo's lint that catches compiler bugs: templates exist, are
// uniquely named and have exactly one type; DAG tasks reference existing templates and tasks;
// containers have images.
func lintWorkflow(wf map[string]any) (*template, error) {
	spec := mapOf(wf["spec"])
	if spec == nil {
		return nil, fmt.Errorf("workflow has no spec")
	}
	tmpls := sliceOf(spec["templates"])
	if len(tmpls) == 0 {
		return nil, fmt.Errorf("workflow has no templates")
	}
	names := map[string]map[string]any{}
	for _, t := range tmpls {
		tm := mapOf(t)
		name := str(tm["name"])
		if name == "" {
			return nil, fmt.Errorf("template without a name")
		}
		if names[name] != nil {
			return nil, fmt.Errorf("template name %q is not unique", name)
		}
		names[name] = tm
		n := 0
		for _, k := range []string{"container", "dag", "steps", "script", "resource", "suspend", "data", "http", "plugin", "containerSet"} {
			if tm[k] != nil {
				n++
			}
		}
		if n != 1 {
			return nil, fmt.Errorf("template %q must have exactly one template type, has %d", name, n)
		}
		if c := mapOf(tm["container"]); c != nil && str(c["image"]) == "" {
			return nil, fmt.Errorf("template %q: container image is required", name)
		}
	}
	if ep := str(spec["entrypoint"]); ep != "" && names[ep] == nil {
		return nil, fmt.Errorf("entrypoint template %q not found", ep)
	}
	for name, tm := range names {
		dag := mapOf(tm["dag"])
		if dag == nil {
			continue
		}
		tasks := map[string]bool{}
		for _, t := range sliceOf(dag["tasks"]) {
			tasks[str(mapOf(t)["name"])] = true
		}
		for _, t := range sliceOf(dag["tasks"]) {
			task := mapOf(t)
			tn := str(task["name"])
			if names[str(task["template"])] == nil {
				return nil, fmt.Errorf("template %q task %q: template %q not found", name, tn, str(task["template"]))
			}
			if task["depends"] != nil && task["dependencies"] != nil {
				return nil, fmt.Errorf("template %q task %q uses both depends and dependencies", name, tn)
			}
			deps := dependsNames(str(task["depends"]))
			for _, d := range sliceOf(task["dependencies"]) {
				deps = append(deps, str(d))
			}
			for _, d := range deps {
				if !tasks[d] {
					return nil, fmt.Errorf("template %q task %q depends on unknown task %q", name, tn, d)
				}
			}
		}
	}
	var params []string
	for _, p := range sliceOf(mapOf(spec["arguments"])["parameters"]) {
		params = append(params, str(mapOf(p)["name"]))
	}
	return &template{kind: TemplateArgo, doc: wf, params: params}, nil
}

func checkIR(ir map[string]any) (*template, error) {
	for k := range ir {
		if !irTopLevel[k] {
			return nil, fmt.Errorf("invalid PipelineSpec: unknown field %q", k)
		}
	}
	if v := str(ir["schemaVersion"]); v != "2.1.0" {
		return nil, fmt.Errorf("unsupported schemaVersion %q, expected 2.1.0", v)
	}
	if str(mapOf(ir["pipelineInfo"])["name"]) == "" {
		return nil, fmt.Errorf("invalid PipelineSpec: pipelineInfo.name is empty")
	}
	if mapOf(ir["root"]) == nil {
		return nil, fmt.Errorf("invalid PipelineSpec: root is required")
	}
	var params []string
	for name := range mapOf(mapOf(mapOf(ir["root"])["inputDefinitions"])["parameters"]) {
		params = append(params, name)
	}
	return &template{kind: TemplateIR, doc: ir, params: params}, nil
}
