// Package ir compiles a pipeline into a KFP 2.x package: the IR PipelineSpec (schemaVersion 2.1.0)
// followed by the Kubernetes PlatformSpec document, as one multi-document YAML file that KFP 2.x
// accepts on upload and in runs. IR containers cannot have init containers, so every step fetches
// the kfbridge step runner from the object store through a presigned URL and verifies its sha256
// before exec (docs/step-runner.md); nothing is downloaded from the internet.
package ir

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/kfbridge/kfbridge/kfp/compile"
	"github.com/kfbridge/kfbridge/pipeline"
)

// SchemaVersion is the IR schema version this compiler writes.
const SchemaVersion = "2.1.0"

// DefaultSDKVersion is written as sdkVersion when Options.SDKVersion is empty.
const DefaultSDKVersion = "kfp-2.14.3"

// RunIDParam is the component input every step receives its run ID through when Options.RunID is
// empty. KFP resolves {{$.pipeline_job_uuid}} only as the constant of a task input parameter (not
// inside command strings), so the run UUID enters as an input and reaches the runner's flags as
// {{$.inputs.parameters['kfbridge_run_id']}}.
const RunIDParam = "kfbridge_run_id"

// RunIDPlaceholder is KFP's placeholder for the run's UUID.
const RunIDPlaceholder = "{{$.pipeline_job_uuid}}"

// Environment variables that carry the runner's location into the download script.
const (
	EnvRunnerURL    = "KFBRIDGE_RUNNER_URL"
	EnvRunnerSHA256 = "KFBRIDGE_RUNNER_SHA256"
)

const (
	platformKubernetes = "kubernetes"
	shmVolume          = "dshm"
	// annotationReadOnly lists mount paths the pipeline asked to be read-only: the KFP platform
	// spec's PvcMount has no read-only field, so the request is recorded on the pod instead.
	annotationReadOnly = "kfbridge/read-only-mounts"
)

// fetchScript downloads the runner to a private temporary directory with curl, wget or python3
// (whichever the image has), verifies its sha256 with sha256sum, python3 or shasum, and execs it
// with the arguments that follow the script ("$@", with $0 = kfbridge-step).
const fetchScript = `set -eu
u="$` + EnvRunnerURL + `"; want="$` + EnvRunnerSHA256 + `"
d=$(mktemp -d 2>/dev/null || { mkdir -p "/tmp/kfbridge-$$" && echo "/tmp/kfbridge-$$"; })
b="$d/kfbridge-step"
if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 3 -o "$b" "$u"
elif command -v wget >/dev/null 2>&1; then wget -q -O "$b" "$u"
elif command -v python3 >/dev/null 2>&1; then python3 -c 'import sys,urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$u" "$b"
else echo "kfbridge: the image has none of curl, wget, python3 to fetch the step runner" >&2; exit 127
fi
if command -v sha256sum >/dev/null 2>&1; then got=$(sha256sum "$b")
elif command -v python3 >/dev/null 2>&1; then got=$(python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$b")
elif command -v shasum >/dev/null 2>&1; then got=$(shasum -a 256 "$b")
else echo "kfbridge: the image has none of sha256sum, python3, shasum to verify the step runner" >&2; exit 127
fi
got=${got%% *}
if [ "$got" != "$want" ]; then echo "kfbridge: step runner checksum mismatch: got $got, want $want" >&2; exit 1; fi
chmod 0555 "$b"
exec "$b" "$@"
`

// Compile returns the two-document YAML (PipelineSpec, then PlatformSpec) that runs p on KFP 2.x.
// Output is deterministic for equal inputs. Errors wrap compile.ErrInvalid when p or opts cannot
// be compiled.
func Compile(p *pipeline.Pipeline, opts compile.Options) ([]byte, error) {
	spec, platform, hint, err := build(p, opts)
	if err != nil {
		return nil, err
	}
	specJSON, err := compile.JSON(spec, hint)
	if err != nil {
		return nil, fmt.Errorf("ir: compile: encode pipeline spec: %w", err)
	}
	platJSON, err := compile.JSON(platform, hint/4)
	if err != nil {
		return nil, fmt.Errorf("ir: compile: encode platform spec: %w", err)
	}
	out := make([]byte, 0, len(specJSON)+len(platJSON)+len(specJSON)/8)
	if out, err = compile.AppendYAML(out, specJSON); err != nil {
		return nil, fmt.Errorf("ir: compile: pipeline spec yaml: %w", err)
	}
	out = append(out, "---\n"...)
	if out, err = compile.AppendYAML(out, platJSON); err != nil {
		return nil, fmt.Errorf("ir: compile: platform spec yaml: %w", err)
	}
	return out, nil
}

func build(p *pipeline.Pipeline, opts compile.Options) (*pipelineSpec, *platformSpec, int, error) {
	if err := opts.Validate(); err != nil {
		return nil, nil, 0, fmt.Errorf("ir: %w", err)
	}
	if opts.RunnerURL == "" || !validSHA256(opts.RunnerSHA256) {
		return nil, nil, 0, fmt.Errorf("ir: compile: options: runner URL and a hex sha256 of the runner are required: %w", compile.ErrInvalid)
	}
	plan, err := compile.NewPlan(p)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("ir: %w", err)
	}
	for _, prm := range p.Parameters {
		if prm.Name == RunIDParam {
			return nil, nil, 0, fmt.Errorf("ir: compile: pipeline parameter name %q is reserved by kfbridge: %w", RunIDParam, compile.ErrInvalid)
		}
	}
	sdk := opts.SDKVersion
	if sdk == "" {
		sdk = DefaultSDKVersion
	}
	runID := opts.RunID
	if runID == "" {
		runID = paramRef(RunIDParam)
	}

	spec := &pipelineSpec{
		Components:     make(map[string]*componentSpec, len(plan.Steps)),
		DeploymentSpec: deploymentSpec{Executors: make(map[string]*executorSpec, len(plan.Steps))},
		PipelineInfo:   pipelineInfo{Name: plan.Name, DisplayName: p.Name, Description: p.Description},
		Root:           componentSpec{DAG: &dagSpec{Tasks: make(map[string]*taskSpec, len(plan.Steps))}},
		SchemaVersion:  SchemaVersion,
		SDKVersion:     sdk,
	}
	if len(p.Parameters) > 0 {
		spec.Root.InputDefinitions = &inputsSpec{Parameters: make(map[string]*parameterSpec, len(p.Parameters))}
		for _, prm := range p.Parameters {
			ps := &parameterSpec{ParameterType: parameterType(prm.Type), Description: prm.Description}
			if v := prm.Effective(); v != nil {
				ps.DefaultValue = typedValue(prm.Type, v)
				ps.IsOptional = true
			} else if !prm.Required {
				ps.IsOptional = true
				if prm.Type == pipeline.ParamString {
					// An optional text parameter left empty must still resolve, or KFP's driver
					// fails the task; Elyra passes it as empty text too.
					ps.DefaultValue = ""
				}
			}
			spec.Root.InputDefinitions.Parameters[prm.Name] = ps
		}
	}
	executors := make(map[string]*k8sExecutorConfig, len(plan.Steps))
	platform := &platformSpec{Platforms: map[string]*singlePlatformSpec{
		platformKubernetes: {DeploymentSpec: platformDeploymentConfig{Executors: executors}},
	}}

	for _, s := range plan.Steps {
		compName, execName := "comp-"+s.Name, "exec-"+s.Name
		comp := &componentSpec{ExecutorLabel: execName}
		task := &taskSpec{
			TaskInfo:     taskInfo{Name: s.DisplayName()},
			ComponentRef: componentRef{Name: compName},
		}
		for _, ps := range s.Parents {
			task.DependentTasks = append(task.DependentTasks, ps.Name)
		}
		if s.Node.DisableCaching != nil && *s.Node.DisableCaching {
			task.CachingOptions = &cachingOptions{}
		} else {
			task.CachingOptions = &cachingOptions{EnableCache: true}
		}
		if opts.RunID == "" || len(s.Params) > 0 {
			comp.InputDefinitions = &inputsSpec{Parameters: map[string]*parameterSpec{}}
			task.Inputs = &taskInputs{Parameters: map[string]*inputParameter{}}
		}
		if opts.RunID == "" {
			comp.InputDefinitions.Parameters[RunIDParam] = &parameterSpec{ParameterType: "STRING"}
			task.Inputs.Parameters[RunIDParam] = &inputParameter{RuntimeValue: &runtimeValue{Constant: RunIDPlaceholder}}
		}
		for _, prm := range s.Params {
			comp.InputDefinitions.Parameters[prm.Name] = &parameterSpec{ParameterType: parameterType(prm.Type)}
			task.Inputs.Parameters[prm.Name] = &inputParameter{ComponentInputParameter: prm.Name}
		}
		spec.Components[compName] = comp
		spec.Root.DAG.Tasks[s.Name] = task
		spec.DeploymentSpec.Executors[execName] = &executorSpec{Container: containerOf(plan, s, opts, runID)}
		executors[execName] = k8sConfigOf(plan, s, opts)
	}
	return spec, platform, plan.SizeHint(), nil
}

func containerOf(plan *compile.Plan, s *compile.Step, opts compile.Options, runID string) containerSpec {
	n := s.Node
	c := containerSpec{
		Image: n.RuntimeImage,
		// sh -c SCRIPT NAME ARGS…: KFP's launcher appends args to command, so the runner's flags
		// arrive as the script's "$@".
		Command: []string{"sh", "-c", fetchScript, "kfbridge-step"},
		Args:    plan.RunnerArgs(s, opts, runID, paramRef),
	}
	for _, e := range plan.Env(s, opts) {
		if e.Secret == "" {
			c.Env = append(c.Env, envVar{Name: e.Name, Value: e.Value})
		}
	}
	c.Env = append(c.Env,
		envVar{Name: EnvRunnerURL, Value: opts.RunnerURL},
		envVar{Name: EnvRunnerSHA256, Value: strings.ToLower(opts.RunnerSHA256)},
	)
	r := n.Resources
	res := &resourceSpec{}
	if r.CPU > 0 {
		res.ResourceCPURequest = compile.Quantity(r.CPU)
	}
	if r.CPULimit > 0 {
		res.ResourceCPULimit = compile.Quantity(r.CPULimit)
	}
	if r.MemoryGB > 0 {
		res.ResourceMemoryRequest = compile.GB(r.MemoryGB)
	}
	if r.MemoryLimitGB > 0 {
		res.ResourceMemoryLimit = compile.GB(r.MemoryLimitGB)
	}
	if r.GPU > 0 {
		res.Accelerator = &accelerator{ResourceType: compile.GPUResource(r), ResourceCount: fmt.Sprint(r.GPU)}
	}
	if *res != (resourceSpec{}) {
		c.Resources = res
	}
	return c
}

// k8sConfigOf is the platform-spec part of one executor: everything IR itself cannot say.
func k8sConfigOf(plan *compile.Plan, s *compile.Step, opts compile.Options) *k8sExecutorConfig {
	n := s.Node
	cfg := &k8sExecutorConfig{}
	// Secret env vars, grouped by Secret in order of first use.
	bySecret := map[string]int{}
	for _, e := range plan.Env(s, opts) {
		if e.Secret == "" {
			continue
		}
		i, ok := bySecret[e.Secret]
		if !ok {
			i = len(cfg.SecretAsEnv)
			bySecret[e.Secret] = i
			cfg.SecretAsEnv = append(cfg.SecretAsEnv, secretAsEnv{SecretName: e.Secret})
		}
		cfg.SecretAsEnv[i].KeyToEnv = append(cfg.SecretAsEnv[i].KeyToEnv, keyToEnv{SecretKey: e.Key, EnvVar: e.Name})
	}
	var readOnly []string
	for _, v := range n.Volumes {
		cfg.PvcMount = append(cfg.PvcMount, pvcMount{Constant: v.PVCName, MountPath: v.Path, SubPath: v.SubPath})
		if v.ReadOnly {
			readOnly = append(readOnly, v.Path)
		}
	}
	if n.SharedMemSizeGB > 0 {
		cfg.EmptyDirMounts = append(cfg.EmptyDirMounts, emptyDirMount{
			VolumeName: shmVolume, MountPath: "/dev/shm", Medium: "Memory", SizeLimit: compile.GB(n.SharedMemSizeGB),
		})
	}
	for _, t := range n.Tolerations {
		cfg.Tolerations = append(cfg.Tolerations, toleration{Key: t.Key, Operator: t.Operator, Value: t.Value, Effect: t.Effect})
	}
	img := opts.Images[n.RuntimeImage]
	cfg.ImagePullPolicy = img.PullPolicy
	for _, sec := range img.PullSecrets {
		cfg.ImagePullSecret = append(cfg.ImagePullSecret, imagePullSecret{SecretName: sec})
	}
	ann := plan.PodAnnotations(s)
	if len(readOnly) > 0 {
		ann[annotationReadOnly] = strings.Join(readOnly, ";")
	}
	cfg.PodMetadata = &podMetadata{Labels: plan.PodLabels(s, opts), Annotations: ann}
	return cfg
}

func paramRef(name string) string { return "{{$.inputs.parameters['" + name + "']}}" }

// parameterType maps Elyra parameter types to IR ParameterTypeEnum names.
func parameterType(t string) string {
	switch t {
	case pipeline.ParamInteger:
		return "NUMBER_INTEGER"
	case pipeline.ParamFloat:
		return "NUMBER_DOUBLE"
	case pipeline.ParamBool:
		return "BOOLEAN"
	default:
		return "STRING"
	}
}

// typedValue converts a parameter value to the JSON type its IR parameter type requires
// (protobuf Value: number, string or bool). Text holding a number or boolean is parsed, since
// Elyra may keep a typed default as text ("10", "true"); anything else stays text, so KFP reports
// the mismatch instead of kfbridge guessing.
func typedValue(typ string, v any) any {
	if text, ok := v.(string); ok && typ != pipeline.ParamString {
		var parsed any
		if json.Unmarshal([]byte(text), &parsed) == nil {
			v = parsed
		}
	}
	switch x := v.(type) {
	case float64:
		switch typ {
		case pipeline.ParamInteger:
			return int64(x)
		case pipeline.ParamFloat:
			return x
		}
	case bool:
		if typ == pipeline.ParamBool {
			return x
		}
	}
	s, _ := compile.ParamString(typ, v)
	return s
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range strings.ToLower(s) {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
