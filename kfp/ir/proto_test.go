package ir_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Strict mirrors of the KFP messages, transcribed from api/v2alpha1/pipeline_spec.proto and
// kubernetes_platform/proto/kubernetes_executor_config.proto (protojson lowerCamel names),
// independently of the compiler's own types. Decoding with DisallowUnknownFields and then
// re-encoding must give back the same document: that is what "KFP's protojson decoder accepts it"
// means for the fields the compiler writes. Messages the compiler never writes are kept as raw
// JSON so that the mirror stays complete without transcribing all of them.

type pbPipelineSpec struct {
	PipelineInfo        *pbPipelineInfo             `json:"pipelineInfo,omitempty"`
	DeploymentSpec      *pbDeploymentConfig         `json:"deploymentSpec,omitempty"`
	SDKVersion          string                      `json:"sdkVersion,omitempty"`
	SchemaVersion       string                      `json:"schemaVersion,omitempty"`
	Components          map[string]*pbComponentSpec `json:"components,omitempty"`
	Root                *pbComponentSpec            `json:"root,omitempty"`
	DefaultPipelineRoot string                      `json:"defaultPipelineRoot,omitempty"`
}

type pbPipelineInfo struct {
	Name        string `json:"name,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
	Description string `json:"description,omitempty"`
}

type pbComponentSpec struct {
	InputDefinitions       *pbComponentInputs `json:"inputDefinitions,omitempty"`
	OutputDefinitions      json.RawMessage    `json:"outputDefinitions,omitempty"`
	DAG                    *pbDagSpec         `json:"dag,omitempty"`
	ExecutorLabel          string             `json:"executorLabel,omitempty"`
	SinglePlatformSpecs    json.RawMessage    `json:"singlePlatformSpecs,omitempty"`
	TaskConfigPassthroughs json.RawMessage    `json:"taskConfigPassthroughs,omitempty"`
}

type pbComponentInputs struct {
	Artifacts  json.RawMessage                  `json:"artifacts,omitempty"`
	Parameters map[string]*pbComponentParamSpec `json:"parameters,omitempty"`
}

type pbComponentParamSpec struct {
	Type          string `json:"type,omitempty"`
	ParameterType string `json:"parameterType,omitempty"`
	DefaultValue  any    `json:"defaultValue,omitempty"`
	IsOptional    bool   `json:"isOptional,omitempty"`
	Description   string `json:"description,omitempty"`
}

type pbDagSpec struct {
	Tasks   map[string]*pbTaskSpec `json:"tasks,omitempty"`
	Outputs json.RawMessage        `json:"outputs,omitempty"`
}

type pbTaskSpec struct {
	TaskInfo          *pbTaskInfo       `json:"taskInfo,omitempty"`
	Inputs            *pbTaskInputs     `json:"inputs,omitempty"`
	DependentTasks    []string          `json:"dependentTasks,omitempty"`
	CachingOptions    *pbCachingOptions `json:"cachingOptions,omitempty"`
	ComponentRef      *pbComponentRef   `json:"componentRef,omitempty"`
	TriggerPolicy     json.RawMessage   `json:"triggerPolicy,omitempty"`
	ArtifactIterator  json.RawMessage   `json:"artifactIterator,omitempty"`
	ParameterIterator json.RawMessage   `json:"parameterIterator,omitempty"`
	RetryPolicy       json.RawMessage   `json:"retryPolicy,omitempty"`
	IteratorPolicy    json.RawMessage   `json:"iteratorPolicy,omitempty"`
}

type pbTaskInfo struct {
	Name string `json:"name,omitempty"`
}

type pbComponentRef struct {
	Name string `json:"name,omitempty"`
}

// pbCachingOptions: proto3 bool; enableCache false is the empty message {}.
type pbCachingOptions struct {
	EnableCache bool `json:"enableCache,omitempty"`
}

type pbTaskInputs struct {
	Parameters map[string]*pbInputParameter `json:"parameters,omitempty"`
	Artifacts  json.RawMessage              `json:"artifacts,omitempty"`
}

type pbInputParameter struct {
	TaskOutputParameter         json.RawMessage `json:"taskOutputParameter,omitempty"`
	RuntimeValue                *pbValueOrParam `json:"runtimeValue,omitempty"`
	ComponentInputParameter     string          `json:"componentInputParameter,omitempty"`
	TaskFinalStatus             json.RawMessage `json:"taskFinalStatus,omitempty"`
	ParameterExpressionSelector string          `json:"parameterExpressionSelector,omitempty"`
}

type pbValueOrParam struct {
	ConstantValue    json.RawMessage `json:"constantValue,omitempty"`
	RuntimeParameter string          `json:"runtimeParameter,omitempty"`
	Constant         any             `json:"constant,omitempty"`
}

type pbDeploymentConfig struct {
	Executors map[string]*pbExecutorSpec `json:"executors,omitempty"`
}

type pbExecutorSpec struct {
	Container *pbContainerSpec `json:"container,omitempty"`
	Importer  json.RawMessage  `json:"importer,omitempty"`
	Resolver  json.RawMessage  `json:"resolver,omitempty"`
	CustomJob json.RawMessage  `json:"customJob,omitempty"`
}

type pbContainerSpec struct {
	Image     string          `json:"image,omitempty"`
	Command   []string        `json:"command,omitempty"`
	Args      []string        `json:"args,omitempty"`
	Lifecycle json.RawMessage `json:"lifecycle,omitempty"`
	Resources *pbResourceSpec `json:"resources,omitempty"`
	Env       []*pbEnvVar     `json:"env,omitempty"`
}

type pbResourceSpec struct {
	CPULimit              float64        `json:"cpuLimit,omitempty"`
	MemoryLimit           float64        `json:"memoryLimit,omitempty"`
	CPURequest            float64        `json:"cpuRequest,omitempty"`
	MemoryRequest         float64        `json:"memoryRequest,omitempty"`
	ResourceCPULimit      string         `json:"resourceCpuLimit,omitempty"`
	ResourceMemoryLimit   string         `json:"resourceMemoryLimit,omitempty"`
	ResourceCPURequest    string         `json:"resourceCpuRequest,omitempty"`
	ResourceMemoryRequest string         `json:"resourceMemoryRequest,omitempty"`
	Accelerator           *pbAccelerator `json:"accelerator,omitempty"`
}

type pbAccelerator struct {
	Type          string `json:"type,omitempty"`
	Count         string `json:"count,omitempty"` // int64: a JSON string in protojson
	ResourceType  string `json:"resourceType,omitempty"`
	ResourceCount string `json:"resourceCount,omitempty"`
}

type pbEnvVar struct {
	Name  string `json:"name,omitempty"`
	Value string `json:"value,omitempty"`
}

type pbPlatformSpec struct {
	Platforms map[string]*pbSinglePlatformSpec `json:"platforms,omitempty"`
}

type pbSinglePlatformSpec struct {
	DeploymentSpec *pbPlatformDeploymentConfig `json:"deploymentSpec,omitempty"`
	Platform       string                      `json:"platform,omitempty"`
	Config         json.RawMessage             `json:"config,omitempty"`
	PipelineConfig json.RawMessage             `json:"pipelineConfig,omitempty"`
}

type pbPlatformDeploymentConfig struct {
	Executors map[string]*pbK8sExecutorConfig `json:"executors,omitempty"`
}

type pbK8sExecutorConfig struct {
	SecretAsVolume         json.RawMessage      `json:"secretAsVolume,omitempty"`
	SecretAsEnv            []*pbSecretAsEnv     `json:"secretAsEnv,omitempty"`
	PvcMount               []*pbPvcMount        `json:"pvcMount,omitempty"`
	NodeSelector           json.RawMessage      `json:"nodeSelector,omitempty"`
	PodMetadata            *pbPodMetadata       `json:"podMetadata,omitempty"`
	ImagePullSecret        []*pbImagePullSecret `json:"imagePullSecret,omitempty"`
	ImagePullPolicy        string               `json:"imagePullPolicy,omitempty"`
	ConfigMapAsVolume      json.RawMessage      `json:"configMapAsVolume,omitempty"`
	ConfigMapAsEnv         json.RawMessage      `json:"configMapAsEnv,omitempty"`
	ActiveDeadlineSeconds  string               `json:"activeDeadlineSeconds,omitempty"`
	FieldPathAsEnv         json.RawMessage      `json:"fieldPathAsEnv,omitempty"`
	Tolerations            []*pbToleration      `json:"tolerations,omitempty"`
	GenericEphemeralVolume json.RawMessage      `json:"genericEphemeralVolume,omitempty"`
	NodeAffinity           json.RawMessage      `json:"nodeAffinity,omitempty"`
	PodAffinity            json.RawMessage      `json:"podAffinity,omitempty"`
	EnabledSharedMemory    json.RawMessage      `json:"enabledSharedMemory,omitempty"`
	EmptyDirMounts         []*pbEmptyDirMount   `json:"emptyDirMounts,omitempty"`
	SecurityContext        json.RawMessage      `json:"securityContext,omitempty"`
	InitContainers         json.RawMessage      `json:"initContainers,omitempty"`
	PodResourceClaims      json.RawMessage      `json:"podResourceClaims,omitempty"`
}

type pbSecretAsEnv struct {
	SecretName          string          `json:"secretName,omitempty"`
	KeyToEnv            []*pbKeyToEnv   `json:"keyToEnv,omitempty"`
	Optional            *bool           `json:"optional,omitempty"`
	SecretNameParameter json.RawMessage `json:"secretNameParameter,omitempty"`
}

type pbKeyToEnv struct {
	SecretKey string `json:"secretKey,omitempty"`
	EnvVar    string `json:"envVar,omitempty"`
}

type pbPvcMount struct {
	TaskOutputParameter     json.RawMessage `json:"taskOutputParameter,omitempty"`
	Constant                string          `json:"constant,omitempty"`
	ComponentInputParameter string          `json:"componentInputParameter,omitempty"`
	MountPath               string          `json:"mountPath,omitempty"`
	PvcNameParameter        json.RawMessage `json:"pvcNameParameter,omitempty"`
	SubPath                 string          `json:"subPath,omitempty"`
}

type pbPodMetadata struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type pbImagePullSecret struct {
	SecretName          string          `json:"secretName,omitempty"`
	SecretNameParameter json.RawMessage `json:"secretNameParameter,omitempty"`
}

type pbToleration struct {
	Key               string          `json:"key,omitempty"`
	Operator          string          `json:"operator,omitempty"`
	Value             string          `json:"value,omitempty"`
	Effect            string          `json:"effect,omitempty"`
	TolerationSeconds string          `json:"tolerationSeconds,omitempty"`
	TolerationJSON    json.RawMessage `json:"tolerationJson,omitempty"`
}

type pbEmptyDirMount struct {
	VolumeName string `json:"volumeName,omitempty"`
	MountPath  string `json:"mountPath,omitempty"`
	Medium     string `json:"medium,omitempty"`
	SizeLimit  string `json:"sizeLimit,omitempty"`
}

// splitDocs splits a multi-document YAML file into JSON documents.
func splitDocs(t *testing.T, y []byte) [][]byte {
	t.Helper()
	var docs [][]byte
	for _, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(y), -1) {
		if strings.TrimSpace(part) == "" {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(part))
		if err != nil {
			t.Fatalf("yaml document to json: %v", err)
		}
		docs = append(docs, js)
	}
	return docs
}

// roundTrip decodes js strictly into v and checks that re-encoding v gives the same JSON value
// (up to proto3 default values). encoding/json matches keys case-insensitively, so the equality
// check is what catches a key whose spelling differs from the proto's.
func roundTrip(js []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("strict decode: %w", err)
	}
	back, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var a, b any
	if err := json.Unmarshal(js, &a); err != nil {
		return err
	}
	if err := json.Unmarshal(back, &b); err != nil {
		return err
	}
	if !reflect.DeepEqual(pruneDefaults(a), pruneDefaults(b)) {
		return fmt.Errorf("document changes on round trip:\nbefore: %s\nafter:  %s", js, back)
	}
	return nil
}

// pruneDefaults drops object members whose value is "" or false: proto3 does not distinguish them
// from absent fields, so a mirror field with omitempty legitimately drops them.
func pruneDefaults(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if val == "" || val == false {
				delete(x, k)
				continue
			}
			x[k] = pruneDefaults(val)
		}
	case []any:
		for i := range x {
			x[i] = pruneDefaults(x[i])
		}
	}
	return v
}

var (
	pipelineNameRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,127}$`)
	placeholderRe   = regexp.MustCompile(`\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}`)
	anyPlaceholder  = regexp.MustCompile(`\{\{\$[^}]*\}\}`)
	parameterTypes  = map[string]bool{"NUMBER_DOUBLE": true, "NUMBER_INTEGER": true, "STRING": true, "BOOLEAN": true, "LIST": true, "STRUCT": true, "TASK_FINAL_STATUS": true}
	pullPolicies    = map[string]bool{"": true, "Always": true, "IfNotPresent": true, "Never": true}
	runtimeConstant = map[string]bool{"{{$.pipeline_job_uuid}}": true, "{{$.pipeline_job_name}}": true, "{{$.pipeline_task_name}}": true}
)

// irProblems checks the semantic rules a KFP 2.x backend applies to a decoded PipelineSpec and
// PlatformSpec: one implementation per component, resolvable references, enum values, and
// placeholders that name declared inputs.
func irProblems(spec *pbPipelineSpec, plat *pbPlatformSpec) []string {
	var probs []string
	add := func(format string, a ...any) { probs = append(probs, fmt.Sprintf(format, a...)) }
	if spec.SchemaVersion != "2.1.0" {
		add("schemaVersion %q", spec.SchemaVersion)
	}
	if spec.PipelineInfo == nil || !pipelineNameRe.MatchString(spec.PipelineInfo.Name) {
		add("pipelineInfo.name missing or not lowercase-dashes")
	}
	if spec.Root == nil || spec.Root.DAG == nil || spec.Root.ExecutorLabel != "" {
		add("root is not a DAG component")
		return probs
	}
	var rootParams map[string]*pbComponentParamSpec
	if spec.Root.InputDefinitions != nil {
		rootParams = spec.Root.InputDefinitions.Parameters
	}
	for name, p := range rootParams {
		if !parameterTypes[p.ParameterType] {
			add("root parameter %q: parameterType %q", name, p.ParameterType)
		}
	}
	usedExec := map[string]bool{}
	for name, c := range spec.Components {
		if (c.DAG != nil) == (c.ExecutorLabel != "") {
			add("component %q must have exactly one of dag and executorLabel", name)
		}
		if c.ExecutorLabel != "" {
			if spec.DeploymentSpec == nil || spec.DeploymentSpec.Executors[c.ExecutorLabel] == nil {
				add("component %q: executor %q not in deploymentSpec", name, c.ExecutorLabel)
			}
			usedExec[c.ExecutorLabel] = true
		}
		if c.InputDefinitions != nil {
			for pn, p := range c.InputDefinitions.Parameters {
				if !parameterTypes[p.ParameterType] {
					add("component %q parameter %q: parameterType %q", name, pn, p.ParameterType)
				}
			}
		}
	}
	for task, ts := range spec.Root.DAG.Tasks {
		if ts.TaskInfo == nil || ts.TaskInfo.Name == "" {
			add("task %q has no taskInfo.name", task)
		}
		if ts.ComponentRef == nil || spec.Components[ts.ComponentRef.Name] == nil {
			add("task %q references a missing component", task)
			continue
		}
		comp := spec.Components[ts.ComponentRef.Name]
		for _, d := range ts.DependentTasks {
			if spec.Root.DAG.Tasks[d] == nil {
				add("task %q depends on unknown task %q", task, d)
			}
		}
		given := map[string]bool{}
		if ts.Inputs != nil {
			for pn, ip := range ts.Inputs.Parameters {
				given[pn] = true
				kinds := 0
				if ip.ComponentInputParameter != "" {
					kinds++
					if rootParams[ip.ComponentInputParameter] == nil {
						add("task %q input %q: unknown pipeline parameter %q", task, pn, ip.ComponentInputParameter)
					}
				}
				if ip.RuntimeValue != nil {
					kinds++
					if s, ok := ip.RuntimeValue.Constant.(string); ok && strings.HasPrefix(s, "{{") && !runtimeConstant[s] {
						add("task %q input %q: unknown runtime placeholder %q", task, pn, s)
					}
				}
				if len(ip.TaskOutputParameter) > 0 || len(ip.TaskFinalStatus) > 0 {
					kinds++
				}
				if kinds != 1 {
					add("task %q input %q has %d kinds, want 1", task, pn, kinds)
				}
				if comp.InputDefinitions == nil || comp.InputDefinitions.Parameters[pn] == nil {
					add("task %q passes %q, which component %q does not declare", task, pn, ts.ComponentRef.Name)
				}
			}
		}
		if comp.InputDefinitions != nil {
			for pn, p := range comp.InputDefinitions.Parameters {
				if !given[pn] && !p.IsOptional && p.DefaultValue == nil {
					add("task %q does not supply required input %q", task, pn)
				}
			}
		}
		if comp.ExecutorLabel != "" && spec.DeploymentSpec != nil {
			ex := spec.DeploymentSpec.Executors[comp.ExecutorLabel]
			if ex == nil || ex.Container == nil || ex.Container.Image == "" || len(ex.Container.Command) == 0 {
				add("executor %q has no container image or command", comp.ExecutorLabel)
				continue
			}
			all := strings.Join(append(append([]string{}, ex.Container.Command...), ex.Container.Args...), "\x00")
			for _, m := range placeholderRe.FindAllStringSubmatch(all, -1) {
				if comp.InputDefinitions == nil || comp.InputDefinitions.Parameters[m[1]] == nil {
					add("executor %q uses undeclared input %q", comp.ExecutorLabel, m[1])
				}
			}
			if rest := placeholderRe.ReplaceAllString(all, ""); anyPlaceholder.MatchString(rest) {
				add("executor %q has a placeholder the launcher does not resolve: %q", comp.ExecutorLabel, anyPlaceholder.FindString(rest))
			}
		}
	}
	if spec.DeploymentSpec != nil {
		for label := range spec.DeploymentSpec.Executors {
			if !usedExec[label] {
				add("executor %q is used by no component", label)
			}
		}
	}
	if plat != nil {
		for name, sp := range plat.Platforms {
			if name != "kubernetes" {
				add("unexpected platform %q", name)
			}
			if sp.DeploymentSpec == nil {
				continue
			}
			for label, cfg := range sp.DeploymentSpec.Executors {
				if !usedExec[label] {
					add("platform config for unknown executor %q", label)
				}
				if !pullPolicies[cfg.ImagePullPolicy] {
					add("executor %q: imagePullPolicy %q", label, cfg.ImagePullPolicy)
				}
				for _, se := range cfg.SecretAsEnv {
					if se.SecretName == "" || len(se.KeyToEnv) == 0 {
						add("executor %q: secretAsEnv without name or keys", label)
					}
				}
				for _, m := range cfg.PvcMount {
					if m.Constant == "" || m.MountPath == "" {
						add("executor %q: pvcMount without claim or path", label)
					}
				}
			}
		}
	}
	sort.Strings(probs)
	return probs
}
