// Package pipeline reads Elyra pipeline files into one normalized model, applies pipeline defaults,
// validates the result and orders its nodes as a DAG. Everything here is a pure function over bytes
// and values: the only I/O is reading files named by the caller (for file checks), so the package
// can be fuzzed and used from the server, the CLI and the compilers alike.
package pipeline

// Node kinds. Generic Elyra nodes are identified by their op; the kind decides how the step runner
// executes the node's file.
const (
	KindNotebook = "notebook" // op execute-notebook-node, .ipynb
	KindPython   = "python"   // op execute-python-node, .py
	KindR        = "r"        // op execute-r-node, .r
)

// Elyra op names of the generic node types.
const (
	OpNotebook = "execute-notebook-node"
	OpPython   = "execute-python-node"
	OpR        = "execute-r-node"
)

// Runtime types as Elyra names them in app_data.runtime_type. An empty value means a generic
// pipeline that any runtime (local or KFP) can run.
const (
	RuntimeKFP     = "KUBEFLOW_PIPELINES"
	RuntimeAirflow = "APACHE_AIRFLOW"
	RuntimeLocal   = "LOCAL"
)

// Pipeline is the normalized model of an Elyra pipeline, whatever file-format version it was read
// from. Pipeline defaults are already merged into every node, supernodes are flattened, and nodes
// keep the order of the file so that output derived from them is deterministic.
type Pipeline struct {
	// Name is app_data.name (set by the submit dialog), else properties.name, else "untitled".
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Source is the pipeline file's base name (app_data.source), used in annotations and messages.
	Source string `json:"source,omitempty"`
	// RuntimeConfig names the runtime configuration to submit to (app_data.runtime_config); empty
	// means the local runtime.
	RuntimeConfig string `json:"runtime_config,omitempty"`
	// RuntimeType is RuntimeKFP, RuntimeAirflow or empty (generic).
	RuntimeType string `json:"runtime_type,omitempty"`
	// Version is the file-format version the file was written in (app_data.version), before
	// migration. The model itself is always the current (v8) shape.
	Version int `json:"version"`
	// CosObjectPrefix is the static object-store prefix from pipeline defaults.
	CosObjectPrefix string `json:"cos_object_prefix,omitempty"`
	// Parameters are the typed pipeline parameters (KFP).
	Parameters []Parameter `json:"parameters,omitempty"`
	// Nodes in file order (supernode contents inlined where the supernode stood).
	Nodes []*Node `json:"nodes"`
}

// Node is one generic execution node with every Elyra property, defaults applied.
type Node struct {
	ID string `json:"id"`
	// Label is the node's display name: app_data.label, else ui_data.label, else the file's base name.
	Label string `json:"label"`
	Op    string `json:"op"`
	// Kind is KindNotebook, KindPython or KindR; empty for nodes that are not generic (custom
	// components), which validation reports as unsupported.
	Kind string `json:"kind,omitempty"`
	// Comment is the text of the canvas comments attached to the node (Elyra's "node user doc").
	Comment string `json:"comment,omitempty"`
	// Parents are the IDs of the nodes this node depends on, in link order, de-duplicated.
	Parents []string `json:"parents,omitempty"`

	// Filename is the node's file, relative to the workspace root (forward slashes).
	Filename     string `json:"filename"`
	RuntimeImage string `json:"runtime_image,omitempty"`
	// Dependencies are files or globs relative to the directory of Filename.
	Dependencies          []string `json:"dependencies,omitempty"`
	IncludeSubdirectories bool     `json:"include_subdirectories,omitempty"`
	// Outputs are files (or globs, or directories) the node produces, relative to its working
	// directory; they are made available to every descendant.
	Outputs []string `json:"outputs,omitempty"`

	Env         []EnvVar     `json:"env_vars,omitempty"`
	Secrets     []SecretEnv  `json:"kubernetes_secrets,omitempty"`
	Volumes     []Volume     `json:"mounted_volumes,omitempty"`
	Tolerations []Toleration `json:"kubernetes_tolerations,omitempty"`
	Annotations []KeyValue   `json:"kubernetes_pod_annotations,omitempty"`
	PodLabels   []KeyValue   `json:"kubernetes_pod_labels,omitempty"`
	// SharedMemSizeGB is the size of the /dev/shm emptyDir in GB; 0 means not set.
	SharedMemSizeGB float64 `json:"kubernetes_shared_mem_size,omitempty"`

	Resources Resources `json:"resources,omitempty"`

	// PipelineParameters names the pipeline parameters passed to this node.
	PipelineParameters []string `json:"pipeline_parameters,omitempty"`
	// DisableCaching is nil when not set (KFP's default applies).
	DisableCaching *bool `json:"disable_node_caching,omitempty"`
}

// Resources are the node's requests and limits. Zero means "not set".
type Resources struct {
	CPU           float64 `json:"cpu,omitempty"`
	CPULimit      float64 `json:"cpu_limit,omitempty"`
	MemoryGB      float64 `json:"memory,omitempty"`
	MemoryLimitGB float64 `json:"memory_limit,omitempty"`
	GPU           int     `json:"gpu,omitempty"`
	// GPUVendor is the Kubernetes resource name of the GPU, default "nvidia.com/gpu".
	GPUVendor string `json:"gpu_vendor,omitempty"`
}

// EnvVar is a plain environment variable.
type EnvVar struct {
	Name  string `json:"env_var"`
	Value string `json:"value"`
}

// SecretEnv exposes one key of a Kubernetes Secret as an environment variable.
type SecretEnv struct {
	Name   string `json:"env_var"`
	Secret string `json:"name"`
	Key    string `json:"key"`
}

// Volume mounts a PersistentVolumeClaim.
type Volume struct {
	Path     string `json:"path"`
	PVCName  string `json:"pvc_name"`
	SubPath  string `json:"sub_path,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// Toleration is a Kubernetes toleration.
type Toleration struct {
	Key      string `json:"key,omitempty"`
	Operator string `json:"operator"`
	Value    string `json:"value,omitempty"`
	Effect   string `json:"effect,omitempty"`
}

// KeyValue is a pod label or annotation.
type KeyValue struct {
	Key   string `json:"key"`
	Value string `json:"value,omitempty"`
}

// Parameter types as Elyra names them in default_value.type.
const (
	ParamString  = "String"
	ParamInteger = "Integer"
	ParamFloat   = "Float"
	ParamBool    = "Bool"
)

// Parameter is a typed pipeline parameter.
type Parameter struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Type is one of ParamString, ParamInteger, ParamFloat, ParamBool.
	Type string `json:"type"`
	// Default is the default value (string, float64 or bool as decoded from JSON), nil if none.
	Default any `json:"default,omitempty"`
	// Value is the submit-time override, nil if none.
	Value    any  `json:"value,omitempty"`
	Required bool `json:"required,omitempty"`
}

// Effective returns the value a run uses: the override if set, else the default.
func (p Parameter) Effective() any {
	if p.Value != nil {
		return p.Value
	}
	return p.Default
}

// Node returns the node with the given ID, or nil.
func (p *Pipeline) Node(id string) *Node {
	for _, n := range p.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}
