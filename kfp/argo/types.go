package argo

// The subset of the Argo Workflow (argoproj.io/v1alpha1) and Kubernetes core types this compiler
// emits. Small local structs instead of the argo-workflows module, which would pull in
// Kubernetes; tests check every emitted field against the Argo v3.1 and v3.5 JSON schemas,
// including that no field is unknown to them.

type workflow struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Metadata   objectMeta   `json:"metadata"`
	Spec       workflowSpec `json:"spec"`
}

type objectMeta struct {
	GenerateName string            `json:"generateName,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
}

type workflowSpec struct {
	Entrypoint         string        `json:"entrypoint"`
	Arguments          *arguments    `json:"arguments,omitempty"`
	ServiceAccountName string        `json:"serviceAccountName"`
	ImagePullSecrets   []localObjRef `json:"imagePullSecrets,omitempty"`
	Templates          []template    `json:"templates"`
}

type arguments struct {
	Parameters []parameter `json:"parameters,omitempty"`
}

type parameter struct {
	Name  string  `json:"name"`
	Value *string `json:"value,omitempty"`
}

type localObjRef struct {
	Name string `json:"name"`
}

type template struct {
	Name           string       `json:"name"`
	Metadata       *podMetadata `json:"metadata,omitempty"`
	Inputs         *inputs      `json:"inputs,omitempty"`
	Outputs        *outputs     `json:"outputs,omitempty"`
	DAG            *dagTemplate `json:"dag,omitempty"`
	InitContainers []container  `json:"initContainers,omitempty"`
	Container      *container   `json:"container,omitempty"`
	Volumes        []volume     `json:"volumes,omitempty"`
	Tolerations    []toleration `json:"tolerations,omitempty"`
}

type podMetadata struct {
	Annotations map[string]string `json:"annotations,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

type inputs struct {
	Parameters []parameter `json:"parameters,omitempty"`
}

type outputs struct {
	Artifacts []artifact `json:"artifacts,omitempty"`
}

type artifact struct {
	Name     string `json:"name"`
	Path     string `json:"path"`
	Optional bool   `json:"optional,omitempty"`
}

type dagTemplate struct {
	Tasks []dagTask `json:"tasks"`
}

type dagTask struct {
	Name         string     `json:"name"`
	Template     string     `json:"template"`
	Dependencies []string   `json:"dependencies,omitempty"`
	Arguments    *arguments `json:"arguments,omitempty"`
}

type container struct {
	Name            string        `json:"name,omitempty"`
	Image           string        `json:"image"`
	ImagePullPolicy string        `json:"imagePullPolicy,omitempty"`
	Command         []string      `json:"command"`
	Args            []string      `json:"args,omitempty"`
	Env             []envVar      `json:"env,omitempty"`
	Resources       *resources    `json:"resources,omitempty"`
	VolumeMounts    []volumeMount `json:"volumeMounts,omitempty"`
}

type envVar struct {
	Name      string        `json:"name"`
	Value     string        `json:"value,omitempty"`
	ValueFrom *envVarSource `json:"valueFrom,omitempty"`
}

type envVarSource struct {
	SecretKeyRef *secretKeySelector `json:"secretKeyRef,omitempty"`
}

type secretKeySelector struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

type resources struct {
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
}

type volumeMount struct {
	Name      string `json:"name"`
	MountPath string `json:"mountPath"`
	SubPath   string `json:"subPath,omitempty"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

type volume struct {
	Name                  string           `json:"name"`
	EmptyDir              *emptyDir        `json:"emptyDir,omitempty"`
	PersistentVolumeClaim *pvcVolumeSource `json:"persistentVolumeClaim,omitempty"`
}

type emptyDir struct {
	Medium    string `json:"medium,omitempty"`
	SizeLimit string `json:"sizeLimit,omitempty"`
}

type pvcVolumeSource struct {
	ClaimName string `json:"claimName"`
	ReadOnly  bool   `json:"readOnly,omitempty"`
}

type toleration struct {
	Key      string `json:"key,omitempty"`
	Operator string `json:"operator,omitempty"`
	Value    string `json:"value,omitempty"`
	Effect   string `json:"effect,omitempty"`
}
