package ir

// The parts of the KFP IR (api/v2alpha1/pipeline_spec.proto, ml_pipelines.PipelineSpec) and of the
// Kubernetes platform spec (kubernetes_platform/proto/kubernetes_executor_config.proto,
// kfp_kubernetes.KubernetesExecutorConfig) that this compiler emits, with protojson's lowerCamel
// field names. Only fields every KFP 2.x backend decodes are used: KFP's protojson decoder rejects
// unknown fields, so an invented or misspelt field fails the upload.

type pipelineSpec struct {
	Components     map[string]*componentSpec `json:"components"`
	DeploymentSpec deploymentSpec            `json:"deploymentSpec"`
	PipelineInfo   pipelineInfo              `json:"pipelineInfo"`
	Root           componentSpec             `json:"root"`
	SchemaVersion  string                    `json:"schemaVersion"`
	SDKVersion     string                    `json:"sdkVersion"`
}

type pipelineInfo struct {
	Name        string `json:"name"`
	DisplayName string `json:"displayName,omitempty"`
	Description string `json:"description,omitempty"`
}

type componentSpec struct {
	InputDefinitions *inputsSpec `json:"inputDefinitions,omitempty"`
	DAG              *dagSpec    `json:"dag,omitempty"`
	ExecutorLabel    string      `json:"executorLabel,omitempty"`
}

type inputsSpec struct {
	Parameters map[string]*parameterSpec `json:"parameters,omitempty"`
}

type parameterSpec struct {
	ParameterType string `json:"parameterType"`
	DefaultValue  any    `json:"defaultValue,omitempty"`
	IsOptional    bool   `json:"isOptional,omitempty"`
	Description   string `json:"description,omitempty"`
}

type dagSpec struct {
	Tasks map[string]*taskSpec `json:"tasks"`
}

type taskSpec struct {
	TaskInfo       taskInfo        `json:"taskInfo"`
	ComponentRef   componentRef    `json:"componentRef"`
	DependentTasks []string        `json:"dependentTasks,omitempty"`
	Inputs         *taskInputs     `json:"inputs,omitempty"`
	CachingOptions *cachingOptions `json:"cachingOptions,omitempty"`
}

type taskInfo struct {
	Name string `json:"name"`
}

type componentRef struct {
	Name string `json:"name"`
}

type taskInputs struct {
	Parameters map[string]*inputParameter `json:"parameters,omitempty"`
}

type inputParameter struct {
	ComponentInputParameter string        `json:"componentInputParameter,omitempty"`
	RuntimeValue            *runtimeValue `json:"runtimeValue,omitempty"`
}

type runtimeValue struct {
	Constant any `json:"constant"`
}

// cachingOptions marshals to {} when caching is off, as the KFP SDK writes a disabled cache.
type cachingOptions struct {
	EnableCache bool `json:"enableCache,omitempty"`
}

type deploymentSpec struct {
	Executors map[string]*executorSpec `json:"executors"`
}

type executorSpec struct {
	Container containerSpec `json:"container"`
}

type containerSpec struct {
	Image     string        `json:"image"`
	Command   []string      `json:"command"`
	Args      []string      `json:"args,omitempty"`
	Env       []envVar      `json:"env,omitempty"`
	Resources *resourceSpec `json:"resources,omitempty"`
}

type envVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type resourceSpec struct {
	ResourceCPULimit      string       `json:"resourceCpuLimit,omitempty"`
	ResourceMemoryLimit   string       `json:"resourceMemoryLimit,omitempty"`
	ResourceCPURequest    string       `json:"resourceCpuRequest,omitempty"`
	ResourceMemoryRequest string       `json:"resourceMemoryRequest,omitempty"`
	Accelerator           *accelerator `json:"accelerator,omitempty"`
}

type accelerator struct {
	ResourceType  string `json:"resourceType"`
	ResourceCount string `json:"resourceCount"`
}

// platformSpec is the second YAML document: ml_pipelines.PlatformSpec with the "kubernetes"
// platform, whose executors map holds a KubernetesExecutorConfig per executor label.
type platformSpec struct {
	Platforms map[string]*singlePlatformSpec `json:"platforms"`
}

type singlePlatformSpec struct {
	DeploymentSpec platformDeploymentConfig `json:"deploymentSpec"`
}

type platformDeploymentConfig struct {
	Executors map[string]*k8sExecutorConfig `json:"executors"`
}

// k8sExecutorConfig uses the original name fields (secretName, constant) rather than the newer
// *Parameter ones, because every KFP 2.x backend still reads them and older ones know nothing
// else.
type k8sExecutorConfig struct {
	SecretAsEnv     []secretAsEnv     `json:"secretAsEnv,omitempty"`
	PvcMount        []pvcMount        `json:"pvcMount,omitempty"`
	PodMetadata     *podMetadata      `json:"podMetadata,omitempty"`
	ImagePullSecret []imagePullSecret `json:"imagePullSecret,omitempty"`
	ImagePullPolicy string            `json:"imagePullPolicy,omitempty"`
	Tolerations     []toleration      `json:"tolerations,omitempty"`
	EmptyDirMounts  []emptyDirMount   `json:"emptyDirMounts,omitempty"`
}

type secretAsEnv struct {
	SecretName string     `json:"secretName"`
	KeyToEnv   []keyToEnv `json:"keyToEnv"`
}

type keyToEnv struct {
	SecretKey string `json:"secretKey"`
	EnvVar    string `json:"envVar"`
}

type pvcMount struct {
	Constant  string `json:"constant"`
	MountPath string `json:"mountPath"`
	SubPath   string `json:"subPath,omitempty"`
}

type podMetadata struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type imagePullSecret struct {
	SecretName string `json:"secretName"`
}

type toleration struct {
	Key      string `json:"key,omitempty"`
	Operator string `json:"operator,omitempty"`
	Value    string `json:"value,omitempty"`
	Effect   string `json:"effect,omitempty"`
}

type emptyDirMount struct {
	VolumeName string `json:"volumeName"`
	MountPath  string `json:"mountPath"`
	Medium     string `json:"medium,omitempty"`
	SizeLimit  string `json:"sizeLimit,omitempty"`
}
