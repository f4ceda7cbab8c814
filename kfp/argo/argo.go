// Package argo compiles a pipeline into a KFP 1.x package: an argoproj.io/v1alpha1 Workflow as the
// KFP v1 SDK (1.8) emits it, with one DAG entrypoint, one container template per node, the
// annotations and labels the KFP UI and cache webhook read, and the kfbridge step runner delivered
// into every pod by an init container (no download from anywhere).
package argo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/kfbridge/kfbridge/kfp/compile"
	"github.com/kfbridge/kfbridge/pipeline"
)

// DefaultSDKVersion is written as pipelines.kubeflow.org/kfp_sdk_version when Options.SDKVersion
// is empty: the KFP v1 SDK release whose output this compiler follows.
const DefaultSDKVersion = "1.8.22"

// RunIDPlaceholder is the run ID when Options.RunID is empty: Argo substitutes the workflow's UID,
// which is unique for every run KFP creates from the package.
const RunIDPlaceholder = "{{workflow.uid}}"

// Runner delivery (Tekton/Argo pattern): the init container copies the runner out of the kfbridge
// image into an emptyDir that the main container mounts read-only.
const (
	runnerVolume    = "kfbridge-bin"
	runnerDir       = "/kfbridge/bin"
	runnerBin       = runnerDir + "/kfbridge-step"
	initName        = "kfbridge-init"
	shmVolume       = "dshm"
	serviceAccount  = "pipeline-runner"
	annotationSDK   = "pipelines.kubeflow.org/kfp_sdk_version"
	labelSDK        = "pipelines.kubeflow.org/kfp_sdk_version"
	labelSDKType    = "pipelines.kubeflow.org/pipeline-sdk-type"
	labelCaching    = "pipelines.kubeflow.org/enable_caching"
	annCompileTime  = "pipelines.kubeflow.org/pipeline_compilation_time"
	annPipelineSpec = "pipelines.kubeflow.org/pipeline_spec"
	annCompSpec     = "pipelines.kubeflow.org/component_spec"
	annCompRef      = "pipelines.kubeflow.org/component_ref"
	annArguments    = "pipelines.kubeflow.org/arguments.parameters"
	annDisplayName  = "pipelines.kubeflow.org/task_display_name"
	annStaleness    = "pipelines.kubeflow.org/max_cache_staleness"
	annSource       = "kfbridge/pipeline-source"
)

// Compile returns the YAML of an Argo Workflow that runs p on KFP 1.x. Output is deterministic
// for equal inputs and Options.Clock. Errors wrap compile.ErrInvalid when p or opts cannot be
// compiled.
func Compile(p *pipeline.Pipeline, opts compile.Options) ([]byte, error) {
	wf, hint, err := build(p, opts)
	if err != nil {
		return nil, err
	}
	js, err := compile.JSON(wf, hint)
	if err != nil {
		return nil, fmt.Errorf("argo: compile: encode workflow: %w", err)
	}
	if err := checkExpressions(js, p); err != nil {
		return nil, err
	}
	out, err := compile.YAML(js)
	if err != nil {
		return nil, fmt.Errorf("argo: compile: encode yaml: %w", err)
	}
	return out, nil
}

func build(p *pipeline.Pipeline, opts compile.Options) (*workflow, int, error) {
	if err := opts.Validate(); err != nil {
		return nil, 0, fmt.Errorf("argo: %w", err)
	}
	if opts.RunnerImage == "" {
		return nil, 0, fmt.Errorf("argo: compile: options: runner image is empty: %w", compile.ErrInvalid)
	}
	if p == nil {
		return nil, 0, fmt.Errorf("argo: compile: nil pipeline: %w", compile.ErrInvalid)
	}
	entry := compile.DNSLabel(p.Name, 50, "pipeline")
	plan, err := compile.NewPlan(p, entry)
	if err != nil {
		return nil, 0, fmt.Errorf("argo: %w", err)
	}
	sdk := opts.SDKVersion
	if sdk == "" {
		sdk = DefaultSDKVersion
	}
	runID := opts.RunID
	if runID == "" {
		runID = RunIDPlaceholder
	}

	wf := &workflow{
		APIVersion: "argoproj.io/v1alpha1",
		Kind:       "Workflow",
		Metadata: objectMeta{
			GenerateName: entry + "-",
			Annotations: map[string]string{
				annotationSDK:   sdk,
				annCompileTime:  opts.Now().Format(time.RFC3339Nano),
				annPipelineSpec: pipelineSpecJSON(p),
			},
			Labels: map[string]string{
				labelSDK:                  sdk,
				compile.LabelPipelineName: compile.LabelValue(p.Name),
			},
		},
		Spec: workflowSpec{
			Entrypoint:         entry,
			ServiceAccountName: serviceAccount,
		},
	}
	if p.Source != "" {
		wf.Metadata.Annotations[annSource] = p.Source
	}
	if opts.RunID != "" {
		wf.Metadata.Labels[compile.LabelRunID] = compile.LabelValue(opts.RunID)
	}

	// Pipeline parameters: workflow arguments, declared again as inputs of the DAG template,
	// which hands each task the ones its node uses.
	var dagInputs *inputs
	if len(p.Parameters) > 0 {
		args := &arguments{}
		dagInputs = &inputs{}
		for _, prm := range p.Parameters {
			v, _ := compile.ParamString(prm.Type, prm.Effective())
			args.Parameters = append(args.Parameters, parameter{Name: prm.Name, Value: &v})
			dagInputs.Parameters = append(dagInputs.Parameters, parameter{Name: prm.Name})
		}
		wf.Spec.Arguments = args
	}

	dag := &dagTemplate{Tasks: make([]dagTask, 0, len(plan.Steps))}
	templates := make([]template, 0, len(plan.Steps)+1)
	pullSecrets := map[string]bool{}
	for _, s := range opts.Images[opts.RunnerImage].PullSecrets {
		pullSecrets[s] = true
	}
	for _, s := range plan.Steps {
		task := dagTask{Name: s.Name, Template: s.Name}
		for _, ps := range s.Parents {
			task.Dependencies = append(task.Dependencies, ps.Name)
		}
		if len(s.Params) > 0 {
			task.Arguments = &arguments{}
			for _, prm := range s.Params {
				v := "{{inputs.parameters." + prm.Name + "}}"
				task.Arguments.Parameters = append(task.Arguments.Parameters, parameter{Name: prm.Name, Value: &v})
			}
		}
		dag.Tasks = append(dag.Tasks, task)
		templates = append(templates, stepTemplate(plan, s, opts, sdk, runID))
		for _, sec := range opts.Images[s.Node.RuntimeImage].PullSecrets {
			pullSecrets[sec] = true
		}
	}
	templates = append(templates, template{Name: entry, Inputs: dagInputs, DAG: dag})
	// The KFP SDK sorts templates by name; doing the same keeps diffs of golden files readable.
	sort.Slice(templates, func(i, j int) bool { return templates[i].Name < templates[j].Name })
	wf.Spec.Templates = templates
	for _, name := range sortedKeys(pullSecrets) {
		wf.Spec.ImagePullSecrets = append(wf.Spec.ImagePullSecrets, localObjRef{Name: name})
	}
	return wf, plan.SizeHint(), nil
}

// stepTemplate is the container template of one node.
func stepTemplate(plan *compile.Plan, s *compile.Step, opts compile.Options, sdk, runID string) template {
	n := s.Node
	paramRef := func(name string) string { return "{{inputs.parameters." + name + "}}" }

	main := &container{
		Image:           n.RuntimeImage,
		ImagePullPolicy: opts.Images[n.RuntimeImage].PullPolicy,
		Command:         []string{runnerBin},
		Args:            plan.RunnerArgs(s, opts, runID, paramRef),
		Resources:       resourcesOf(n.Resources),
		VolumeMounts:    []volumeMount{{Name: runnerVolume, MountPath: runnerDir, ReadOnly: true}},
	}
	for _, e := range plan.Env(s, opts) {
		if e.Secret != "" {
			main.Env = append(main.Env, envVar{Name: e.Name, ValueFrom: &envVarSource{SecretKeyRef: &secretKeySelector{Name: e.Secret, Key: e.Key}}})
		} else {
			main.Env = append(main.Env, envVar{Name: e.Name, Value: e.Value})
		}
	}
	init := container{
		Name:            initName,
		Image:           opts.RunnerImage,
		ImagePullPolicy: opts.Images[opts.RunnerImage].PullPolicy,
		Command:         []string{compile.RunnerPath, "cp", compile.RunnerPath, runnerBin},
		VolumeMounts:    []volumeMount{{Name: runnerVolume, MountPath: runnerDir}},
	}
	t := template{
		Name:           s.Name,
		InitContainers: []container{init},
		Container:      main,
		Volumes:        []volume{{Name: runnerVolume, EmptyDir: &emptyDir{}}},
	}

	// PVC mounts: one volume per mount, so the same claim can be mounted twice (different
	// sub_path or read_only) without clashing volume names.
	vnames := compile.NewNamer(runnerVolume, shmVolume)
	for _, v := range n.Volumes {
		name := vnames.Unique(compile.DNSLabel("pvc-"+v.PVCName, 50, "pvc"))
		t.Volumes = append(t.Volumes, volume{Name: name, PersistentVolumeClaim: &pvcVolumeSource{ClaimName: v.PVCName}})
		main.VolumeMounts = append(main.VolumeMounts, volumeMount{Name: name, MountPath: v.Path, SubPath: v.SubPath, ReadOnly: v.ReadOnly})
	}
	if n.SharedMemSizeGB > 0 {
		t.Volumes = append(t.Volumes, volume{Name: shmVolume, EmptyDir: &emptyDir{Medium: "Memory", SizeLimit: compile.GB(n.SharedMemSizeGB)}})
		main.VolumeMounts = append(main.VolumeMounts, volumeMount{Name: shmVolume, MountPath: "/dev/shm"})
	}
	for _, tol := range n.Tolerations {
		t.Tolerations = append(t.Tolerations, toleration{Key: tol.Key, Operator: tol.Operator, Value: tol.Value, Effect: tol.Effect})
	}
	if len(s.Params) > 0 {
		t.Inputs = &inputs{}
		for _, prm := range s.Params {
			t.Inputs.Parameters = append(t.Inputs.Parameters, parameter{Name: prm.Name})
		}
	}
	if !opts.NoVisualizations {
		t.Outputs = &outputs{Artifacts: []artifact{
			{Name: "mlpipeline-ui-metadata", Path: compile.UIMetadataPath, Optional: true},
			{Name: "mlpipeline-metrics", Path: compile.MetricsPath, Optional: true},
		}}
	}

	labels := plan.PodLabels(s, opts)
	labels[labelSDK] = sdk
	labels[labelSDKType] = "kfp"
	caching := n.DisableCaching == nil || !*n.DisableCaching
	labels[labelCaching] = fmt.Sprint(caching)
	ann := plan.PodAnnotations(s)
	ann[annDisplayName] = s.DisplayName()
	ann[annCompSpec] = componentSpecJSON(s)
	ann[annCompRef] = "{}"
	if len(s.Params) > 0 {
		args := make(map[string]string, len(s.Params))
		for _, prm := range s.Params {
			args[prm.Name] = paramRef(prm.Name)
		}
		ann[annArguments] = mustJSON(args)
	}
	if !caching {
		// The KFP 1.x cache webhook has no per-step off switch besides the label; a zero
		// staleness also stops older webhooks from reusing a cached result.
		ann[annStaleness] = "P0D"
	}
	t.Metadata = &podMetadata{Labels: labels, Annotations: ann}
	return t
}

func resourcesOf(r pipeline.Resources) *resources {
	req, lim := map[string]string{}, map[string]string{}
	if r.CPU > 0 {
		req["cpu"] = compile.Quantity(r.CPU)
	}
	if r.MemoryGB > 0 {
		req["memory"] = compile.GB(r.MemoryGB)
	}
	if r.CPULimit > 0 {
		lim["cpu"] = compile.Quantity(r.CPULimit)
	}
	if r.MemoryLimitGB > 0 {
		lim["memory"] = compile.GB(r.MemoryLimitGB)
	}
	if r.GPU > 0 {
		// Extended resources (GPUs) may only be set as limits; Kubernetes copies them to requests.
		lim[compile.GPUResource(r)] = fmt.Sprint(r.GPU)
	}
	if len(req) == 0 && len(lim) == 0 {
		return nil
	}
	res := &resources{}
	if len(req) > 0 {
		res.Requests = req
	}
	if len(lim) > 0 {
		res.Limits = lim
	}
	return res
}

// pipelineSpecJSON is the pipelines.kubeflow.org/pipeline_spec annotation: name, description and
// typed inputs, as the KFP v1 SDK writes it.
func pipelineSpecJSON(p *pipeline.Pipeline) string {
	type input struct {
		Name        string `json:"name"`
		Type        string `json:"type"`
		Default     string `json:"default,omitempty"`
		Description string `json:"description,omitempty"`
		Optional    bool   `json:"optional,omitempty"`
	}
	spec := struct {
		Name        string  `json:"name"`
		Description string  `json:"description,omitempty"`
		Inputs      []input `json:"inputs,omitempty"`
	}{Name: p.Name, Description: p.Description}
	for _, prm := range p.Parameters {
		in := input{Name: prm.Name, Type: prm.Type, Description: prm.Description}
		if v, ok := compile.ParamString(prm.Type, prm.Effective()); ok {
			in.Default = v
			in.Optional = true
		}
		spec.Inputs = append(spec.Inputs, in)
	}
	return mustJSON(spec)
}

// componentSpecJSON is the pipelines.kubeflow.org/component_spec annotation; the KFP UI takes the
// node's name from it.
func componentSpecJSON(s *compile.Step) string {
	type input struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}
	spec := struct {
		Name           string  `json:"name"`
		Description    string  `json:"description"`
		Inputs         []input `json:"inputs,omitempty"`
		Implementation struct {
			Container struct {
				Image string `json:"image"`
			} `json:"container"`
		} `json:"implementation"`
	}{Name: s.DisplayName(), Description: "Run " + s.Node.Kind + " file " + s.Node.Filename}
	for _, prm := range s.Params {
		spec.Inputs = append(spec.Inputs, input{Name: prm.Name, Type: prm.Type})
	}
	spec.Implementation.Container.Image = s.Node.RuntimeImage
	return mustJSON(spec)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only strings, maps of strings and slices of those are marshalled here.
		panic(fmt.Sprintf("argo: marshal annotation: %v", err))
	}
	return string(b)
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkExpressions rejects Argo template expressions ("{{…}}") other than the ones the compiler
// writes itself. Argo substitutes expressions anywhere in a template, and KFP's upload lint fails
// on unresolvable ones, so a "{{" in a file name, env value or comment would otherwise break the
// upload with a confusing message, or worse, be silently replaced.
func checkExpressions(js []byte, p *pipeline.Pipeline) error {
	s := js
	for {
		i := bytes.Index(s, []byte("{{"))
		if i < 0 {
			return nil
		}
		s = s[i:]
		j := bytes.Index(s, []byte("}}"))
		if j < 0 {
			return fmt.Errorf("argo: compile: unterminated %q in pipeline %q: Argo would try to resolve it as an expression: %w", truncate(string(s), 40), p.Name, compile.ErrInvalid)
		}
		expr := string(s[2:j])
		if !allowedExpr(expr, p) {
			return fmt.Errorf("argo: compile: pipeline %q contains %q, which Argo would try to resolve as an expression: %w", p.Name, "{{"+expr+"}}", compile.ErrInvalid)
		}
		s = s[j+2:]
	}
}

func allowedExpr(expr string, p *pipeline.Pipeline) bool {
	if "{{"+expr+"}}" == RunIDPlaceholder {
		return true
	}
	if name, ok := strings.CutPrefix(expr, "inputs.parameters."); ok {
		for _, prm := range p.Parameters {
			if prm.Name == name {
				return true
			}
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
