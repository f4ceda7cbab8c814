package argo_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"
)

// Argo JSON schemas (argo-workflows api/jsonschema/schema.json) of the two Argo lines KFP uses:
// 3.1 (KFP 1.8) and 3.5 (KFP 2.x up to 2.5).
var schemaFiles = map[string]string{
	"v3.1.15": "/work/shared/specs/argo/v3.1.15/schema.json",
	"v3.5.14": "/work/shared/specs/argo/v3.5.14/schema.json",
}

const workflowDef = "io.argoproj.workflow.v1alpha1.Workflow"

type argoSchema struct {
	validator *jsonschema.Schema
	defs      map[string]any
}

var (
	schemasOnce sync.Once
	schemas     map[string]*argoSchema
	schemasErr  error
)

// loadSchemas compiles the Workflow definition of both schema files once per test binary.
func loadSchemas(t testing.TB) map[string]*argoSchema {
	t.Helper()
	schemasOnce.Do(func() {
		schemas = map[string]*argoSchema{}
		for version, file := range schemaFiles {
			f, err := os.Open(file)
			if err != nil {
				schemasErr = err
				return
			}
			doc, err := jsonschema.UnmarshalJSON(f)
			f.Close()
			if err != nil {
				schemasErr = fmt.Errorf("%s: %w", file, err)
				return
			}
			m := doc.(map[string]any)
			// The files declare "$schema": "http://json-schema.org/schema#", which names no
			// specific draft and would make the compiler try to fetch it; the content is draft-07.
			delete(m, "$schema")
			delete(m, "$id")
			c := jsonschema.NewCompiler()
			c.DefaultDraft(jsonschema.Draft7)
			url := "file:///argo-" + version + ".json"
			if err := c.AddResource(url, m); err != nil {
				schemasErr = fmt.Errorf("%s: %w", file, err)
				return
			}
			sch, err := c.Compile(url + "#/definitions/" + workflowDef)
			if err != nil {
				schemasErr = fmt.Errorf("%s: %w", file, err)
				return
			}
			schemas[version] = &argoSchema{validator: sch, defs: m["definitions"].(map[string]any)}
		}
	})
	if schemasErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("argo schemas: %v", schemasErr)
		}
		t.Skipf("argo schemas unavailable: %v", schemasErr)
	}
	return schemas
}

// validateSchemas checks a compiled workflow (YAML) against both Argo schemas, and also that
// every object key is a property the schema declares: the schemas allow unknown fields, and
// Argo's own parser silently drops them, so a misspelt field would otherwise pass unnoticed.
func validateSchemas(t *testing.T, name string, y []byte) {
	t.Helper()
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("%s: yaml to json: %v", name, err)
	}
	for version, s := range loadSchemas(t) {
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.validator.Validate(inst); err != nil {
			t.Errorf("%s: not a valid Argo %s Workflow: %v", name, version, err)
		}
		var unknown []string
		s.unknownFields(map[string]any{"$ref": "#/definitions/" + workflowDef}, inst, "", &unknown)
		if len(unknown) > 0 {
			t.Errorf("%s: fields unknown to Argo %s: %s", name, version, strings.Join(unknown, ", "))
		}
	}
}

func (s *argoSchema) resolve(sch map[string]any) map[string]any {
	for {
		ref, ok := sch["$ref"].(string)
		if !ok {
			return sch
		}
		sch = s.defs[strings.TrimPrefix(ref, "#/definitions/")].(map[string]any)
	}
}

func (s *argoSchema) unknownFields(sch map[string]any, v any, at string, out *[]string) {
	sch = s.resolve(sch)
	switch x := v.(type) {
	case map[string]any:
		props, _ := sch["properties"].(map[string]any)
		addl, _ := sch["additionalProperties"].(map[string]any)
		for k, val := range x {
			if p, ok := props[k].(map[string]any); ok {
				s.unknownFields(p, val, at+"."+k, out)
			} else if addl != nil {
				s.unknownFields(addl, val, at+"."+k, out)
			} else if props != nil {
				*out = append(*out, at+"."+k)
			}
		}
	case []any:
		if items, ok := sch["items"].(map[string]any); ok {
			for i, val := range x {
				s.unknownFields(items, val, fmt.Sprintf("%s[%d]", at, i), out)
			}
		}
	}
}

// The KFP v1 upload rules (kfp.md §1.2): what pipeline_upload_server.go and Argo's
// ValidateWorkflow (lint on) reject, restricted to what a DAG-of-containers workflow can get wrong.

var (
	dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	labelValueRe = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
	exprRe       = regexp.MustCompile(`\{\{\s*([^{}]*?)\s*\}\}`)
	paramNameRe  = regexp.MustCompile(`^[-a-zA-Z0-9_]+$`)
)

type wfParam struct {
	Name  string  `json:"name"`
	Value *string `json:"value"`
}

type wfTemplate struct {
	Name     string `json:"name"`
	Metadata struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Inputs struct {
		Parameters []wfParam `json:"parameters"`
	} `json:"inputs"`
	Container      *wfContainer  `json:"container"`
	InitContainers []wfContainer `json:"initContainers"`
	Script         any           `json:"script"`
	Steps          any           `json:"steps"`
	Resource       any           `json:"resource"`
	Suspend        any           `json:"suspend"`
	DAG            *struct {
		Tasks []struct {
			Name         string   `json:"name"`
			Template     string   `json:"template"`
			Dependencies []string `json:"dependencies"`
			Depends      string   `json:"depends"`
			Arguments    struct {
				Parameters []wfParam `json:"parameters"`
			} `json:"arguments"`
		} `json:"tasks"`
	} `json:"dag"`
	Volumes []struct {
		Name string `json:"name"`
	} `json:"volumes"`
}

type wfContainer struct {
	Name         string `json:"name"`
	Image        string `json:"image"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
	Env []struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `json:"name"`
				Key  string `json:"key"`
			} `json:"secretKeyRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	Args    []string `json:"args"`
	Command []string `json:"command"`
}

type wfDoc struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		GenerateName string            `json:"generateName"`
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Entrypoint         string `json:"entrypoint"`
		ServiceAccountName string `json:"serviceAccountName"`
		Arguments          struct {
			Parameters []wfParam `json:"parameters"`
		} `json:"arguments"`
		Templates []wfTemplate `json:"templates"`
	} `json:"spec"`
}

func decodeWorkflow(t *testing.T, y []byte) *wfDoc {
	t.Helper()
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		t.Fatalf("yaml to json: %v", err)
	}
	var wf wfDoc
	if err := json.Unmarshal(js, &wf); err != nil {
		t.Fatalf("decode workflow: %v", err)
	}
	return &wf
}

// uploadProblems returns what KFP 1.x upload (and Argo lint) would reject in a compiled workflow.
func uploadProblems(y []byte) []string {
	var probs []string
	add := func(format string, a ...any) { probs = append(probs, fmt.Sprintf(format, a...)) }

	// JSON-serialisable: the server stores the re-marshalled JSON of the parsed workflow.
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		return []string{"not convertible to JSON: " + err.Error()}
	}
	if len(y) > 32<<20 {
		add("file is %d bytes, over KFP's 32 MiB upload limit", len(y))
	}
	var wf wfDoc
	if err := json.Unmarshal(js, &wf); err != nil {
		return []string{"does not decode as a Workflow: " + err.Error()}
	}
	if wf.APIVersion != "argoproj.io/v1alpha1" {
		add("apiVersion %q", wf.APIVersion)
	}
	if wf.Kind != "Workflow" {
		add("kind %q", wf.Kind)
	}
	gn := wf.Metadata.GenerateName
	if !strings.HasSuffix(gn, "-") || !dns1123Label.MatchString(strings.TrimSuffix(gn, "-")) || len(gn) > 58 {
		add("generateName %q is not a DNS-1123 prefix of at most 58 characters", gn)
	}
	for k, v := range wf.Metadata.Labels {
		if !labelValueRe.MatchString(v) || len(v) > 63 {
			add("workflow label %s=%q is not a valid label value", k, v)
		}
	}
	if wf.Spec.ServiceAccountName != "pipeline-runner" {
		add("serviceAccountName %q", wf.Spec.ServiceAccountName)
	}
	params, _ := json.Marshal(wf.Spec.Arguments.Parameters)
	if len(params) > 10000 {
		add("spec.arguments.parameters JSON is %d bytes, over KFP's 10000", len(params))
	}
	wfParams := map[string]bool{}
	for _, p := range wf.Spec.Arguments.Parameters {
		if !paramNameRe.MatchString(p.Name) || wfParams[p.Name] {
			add("workflow parameter name %q invalid or duplicate", p.Name)
		}
		wfParams[p.Name] = true
		if p.Value == nil {
			add("workflow parameter %q has no value", p.Name)
		}
	}

	templates := map[string]*wfTemplate{}
	for i := range wf.Spec.Templates {
		tp := &wf.Spec.Templates[i]
		if !dns1123Label.MatchString(tp.Name) || len(tp.Name) > 63 {
			add("template name %q is not a DNS-1123 label", tp.Name)
		}
		if templates[tp.Name] != nil {
			add("duplicate template %q", tp.Name)
		}
		templates[tp.Name] = tp
	}
	entry := templates[wf.Spec.Entrypoint]
	if entry == nil {
		add("entrypoint %q is not a template", wf.Spec.Entrypoint)
	} else {
		for _, in := range entry.Inputs.Parameters {
			if !wfParams[in.Name] && in.Value == nil {
				add("entrypoint input %q has no workflow argument", in.Name)
			}
		}
	}

	for _, tp := range wf.Spec.Templates {
		types := 0
		for _, set := range []bool{tp.Container != nil, tp.DAG != nil, tp.Script != nil, tp.Steps != nil, tp.Resource != nil, tp.Suspend != nil} {
			if set {
				types++
			}
		}
		if types != 1 {
			add("template %q has %d template types, want exactly 1", tp.Name, types)
		}
		declared := map[string]bool{}
		for _, in := range tp.Inputs.Parameters {
			if declared[in.Name] {
				add("template %q declares input %q twice", tp.Name, in.Name)
			}
			declared[in.Name] = true
		}
		// Every expression must resolve in this template's scope.
		raw, _ := json.Marshal(tp)
		for _, m := range exprRe.FindAllStringSubmatch(string(raw), -1) {
			expr := m[1]
			switch {
			case expr == "workflow.uid" || expr == "workflow.name" || expr == "workflow.namespace":
			case strings.HasPrefix(expr, "inputs.parameters."):
				if !declared[strings.TrimPrefix(expr, "inputs.parameters.")] {
					add("template %q: unresolvable {{%s}}", tp.Name, expr)
				}
			default:
				add("template %q: unresolvable {{%s}}", tp.Name, expr)
			}
		}
		for k, v := range tp.Metadata.Labels {
			if !labelValueRe.MatchString(v) || len(v) > 63 {
				add("template %q: label %s=%q is not a valid label value", tp.Name, k, v)
			}
		}
		if tp.Container != nil {
			volumes := map[string]bool{}
			for _, v := range tp.Volumes {
				if volumes[v.Name] || !dns1123Label.MatchString(v.Name) {
					add("template %q: volume name %q invalid or duplicate", tp.Name, v.Name)
				}
				volumes[v.Name] = true
			}
			containers := append([]wfContainer{*tp.Container}, tp.InitContainers...)
			for _, c := range containers {
				if c.Image == "" {
					add("template %q: container %q has no image", tp.Name, c.Name)
				}
				if len(c.Command) == 0 {
					add("template %q: container %q has no explicit command", tp.Name, c.Name)
				}
				mounts := map[string]bool{}
				for _, vm := range c.VolumeMounts {
					if !volumes[vm.Name] {
						add("template %q: mount of unknown volume %q", tp.Name, vm.Name)
					}
					if mounts[vm.MountPath] {
						add("template %q: two mounts at %q", tp.Name, vm.MountPath)
					}
					mounts[vm.MountPath] = true
				}
			}
		}
		if tp.DAG != nil {
			tasks := map[string]bool{}
			for _, task := range tp.DAG.Tasks {
				if !dns1123Label.MatchString(task.Name) || tasks[task.Name] {
					add("dag %q: task name %q invalid or duplicate", tp.Name, task.Name)
				}
				tasks[task.Name] = true
			}
			deps := map[string][]string{}
			for _, task := range tp.DAG.Tasks {
				if task.Depends != "" && len(task.Dependencies) > 0 {
					add("dag %q: task %q uses both depends and dependencies", tp.Name, task.Name)
				}
				target := templates[task.Template]
				if target == nil {
					add("dag %q: task %q references unknown template %q", tp.Name, task.Name, task.Template)
					continue
				}
				for _, d := range task.Dependencies {
					if !tasks[d] {
						add("dag %q: task %q depends on unknown task %q", tp.Name, task.Name, d)
					}
				}
				deps[task.Name] = task.Dependencies
				given := map[string]bool{}
				for _, a := range task.Arguments.Parameters {
					given[a.Name] = true
					if a.Value == nil {
						add("dag %q: task %q argument %q has no value", tp.Name, task.Name, a.Name)
					}
				}
				for _, in := range target.Inputs.Parameters {
					if !given[in.Name] && in.Value == nil {
						add("dag %q: task %q does not supply input %q of template %q", tp.Name, task.Name, in.Name, target.Name)
					}
				}
			}
			if cyc := findCycle(deps); cyc != "" {
				add("dag %q: dependency cycle through %q", tp.Name, cyc)
			}
		}
	}
	sort.Strings(probs)
	return probs
}

func findCycle(deps map[string][]string) string {
	state := map[string]int{}
	var visit func(string) string
	visit = func(n string) string {
		switch state[n] {
		case 1:
			return n
		case 2:
			return ""
		}
		state[n] = 1
		for _, d := range deps[n] {
			if c := visit(d); c != "" {
				return c
			}
		}
		state[n] = 2
		return ""
	}
	for n := range deps {
		if c := visit(n); c != "" {
			return c
		}
	}
	return ""
}
