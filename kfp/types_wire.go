package kfp

import "encoding/json"

// Wire types: the JSON shapes of the swagger definitions, snake_case as KFP marshals them.
// Response types carry output-only fields; request bodies use the *Req types so that output-only
// fields (timestamps) are never sent.

// ---- v1beta1 ----

type v1ResourceKey struct {
	Type string `json:"type,omitempty"`
	ID   string `json:"id,omitempty"`
}

type v1ResourceRef struct {
	Key          v1ResourceKey `json:"key"`
	Name         string        `json:"name,omitempty"`
	Relationship string        `json:"relationship,omitempty"`
}

type v1Healthz struct {
	MultiUser bool `json:"multi_user"`
}

type v1PipelineVersion struct {
	ID                 string          `json:"id"`
	Name               string          `json:"name"`
	CreatedAt          ArgoTime        `json:"created_at"`
	Description        string          `json:"description"`
	ResourceReferences []v1ResourceRef `json:"resource_references"`
}

type v1Pipeline struct {
	ID                 string             `json:"id"`
	CreatedAt          ArgoTime           `json:"created_at"`
	Name               string             `json:"name"`
	Description        string             `json:"description"`
	Error              string             `json:"error"`
	DefaultVersion     *v1PipelineVersion `json:"default_version"`
	ResourceReferences []v1ResourceRef    `json:"resource_references"`
}

type v1ListPipelines struct {
	Pipelines     []v1Pipeline `json:"pipelines"`
	NextPageToken string       `json:"next_page_token"`
}

type v1ListVersions struct {
	Versions      []v1PipelineVersion `json:"versions"`
	NextPageToken string              `json:"next_page_token"`
}

type v1Experiment struct {
	ID                 string          `json:"id"`
	Name               string          `json:"name"`
	Description        string          `json:"description"`
	CreatedAt          ArgoTime        `json:"created_at"`
	ResourceReferences []v1ResourceRef `json:"resource_references"`
	StorageState       string          `json:"storage_state"`
}

type v1ExperimentReq struct {
	Name               string          `json:"name"`
	Description        string          `json:"description,omitempty"`
	ResourceReferences []v1ResourceRef `json:"resource_references,omitempty"`
}

type v1ListExperiments struct {
	Experiments   []v1Experiment `json:"experiments"`
	NextPageToken string         `json:"next_page_token"`
}

type v1Parameter struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type v1PipelineSpec struct {
	PipelineID       string        `json:"pipeline_id,omitempty"`
	PipelineName     string        `json:"pipeline_name,omitempty"`
	WorkflowManifest string        `json:"workflow_manifest,omitempty"`
	PipelineManifest string        `json:"pipeline_manifest,omitempty"`
	Parameters       []v1Parameter `json:"parameters,omitempty"`
}

type v1Run struct {
	ID                 string          `json:"id"`
	Name               string          `json:"name"`
	StorageState       string          `json:"storage_state"`
	Description        string          `json:"description"`
	PipelineSpec       *v1PipelineSpec `json:"pipeline_spec"`
	ResourceReferences []v1ResourceRef `json:"resource_references"`
	ServiceAccount     string          `json:"service_account"`
	CreatedAt          ArgoTime        `json:"created_at"`
	ScheduledAt        ArgoTime        `json:"scheduled_at"`
	FinishedAt         ArgoTime        `json:"finished_at"`
	Status             string          `json:"status"`
	Error              string          `json:"error"`
}

type v1RunReq struct {
	Name               string          `json:"name"`
	Description        string          `json:"description,omitempty"`
	PipelineSpec       *v1PipelineSpec `json:"pipeline_spec,omitempty"`
	ResourceReferences []v1ResourceRef `json:"resource_references,omitempty"`
	ServiceAccount     string          `json:"service_account,omitempty"`
}

type v1RunDetail struct {
	Run             v1Run `json:"run"`
	PipelineRuntime struct {
		PipelineManifest string `json:"pipeline_manifest"`
		WorkflowManifest string `json:"workflow_manifest"`
	} `json:"pipeline_runtime"`
}

type v1ListRuns struct {
	Runs          []v1Run `json:"runs"`
	NextPageToken string  `json:"next_page_token"`
}

// v1 filter: predicates use "op".
type v1Filter struct {
	Predicates []v1Predicate `json:"predicates"`
}

type v1Predicate struct {
	Key         string `json:"key"`
	Op          string `json:"op"`
	StringValue string `json:"string_value"`
}

// ---- v2beta1 ----

type v2Healthz struct {
	MultiUser     bool   `json:"multi_user"`
	PipelineStore string `json:"pipeline_store"`
}

type v2Status struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type v2Pipeline struct {
	PipelineID  string    `json:"pipeline_id"`
	DisplayName string    `json:"display_name"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   ArgoTime  `json:"created_at"`
	Namespace   string    `json:"namespace"`
	Error       *v2Status `json:"error"`
}

type v2PipelineVersion struct {
	PipelineID        string    `json:"pipeline_id"`
	PipelineVersionID string    `json:"pipeline_version_id"`
	DisplayName       string    `json:"display_name"`
	Name              string    `json:"name"`
	Description       string    `json:"description"`
	CreatedAt         ArgoTime  `json:"created_at"`
	Error             *v2Status `json:"error"`
}

type v2ListPipelines struct {
	Pipelines     []v2Pipeline `json:"pipelines"`
	NextPageToken string       `json:"next_page_token"`
}

type v2ListVersions struct {
	PipelineVersions []v2PipelineVersion `json:"pipeline_versions"`
	NextPageToken    string              `json:"next_page_token"`
}

type v2Experiment struct {
	ExperimentID string   `json:"experiment_id"`
	DisplayName  string   `json:"display_name"`
	Description  string   `json:"description"`
	CreatedAt    ArgoTime `json:"created_at"`
	Namespace    string   `json:"namespace"`
	StorageState string   `json:"storage_state"`
}

type v2ExperimentReq struct {
	DisplayName string `json:"display_name"`
	Description string `json:"description,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
}

type v2ListExperiments struct {
	Experiments   []v2Experiment `json:"experiments"`
	NextPageToken string         `json:"next_page_token"`
}

type v2VersionRef struct {
	PipelineID        string `json:"pipeline_id,omitempty"`
	PipelineVersionID string `json:"pipeline_version_id,omitempty"`
}

type v2RuntimeConfig struct {
	Parameters   map[string]any `json:"parameters,omitempty"`
	PipelineRoot string         `json:"pipeline_root,omitempty"`
}

type v2RunReq struct {
	ExperimentID             string           `json:"experiment_id,omitempty"`
	DisplayName              string           `json:"display_name"`
	Description              string           `json:"description,omitempty"`
	PipelineSpec             json.RawMessage  `json:"pipeline_spec,omitempty"`
	PipelineVersionReference *v2VersionRef    `json:"pipeline_version_reference,omitempty"`
	RuntimeConfig            *v2RuntimeConfig `json:"runtime_config,omitempty"`
	ServiceAccount           string           `json:"service_account,omitempty"`
}

type v2Task struct {
	RunID          string    `json:"run_id"`
	TaskID         string    `json:"task_id"`
	DisplayName    string    `json:"display_name"`
	CreateTime     ArgoTime  `json:"create_time"`
	StartTime      ArgoTime  `json:"start_time"`
	EndTime        ArgoTime  `json:"end_time"`
	State          string    `json:"state"`
	Error          *v2Status `json:"error"`
	ParentTaskID   string    `json:"parent_task_id"`
	PodName        string    `json:"pod_name"`
	ExecutorDetail *struct {
		MainJob string `json:"main_job"`
	} `json:"executor_detail"`
	ChildTasks []struct {
		TaskID  string `json:"task_id"`
		PodName string `json:"pod_name"`
	} `json:"child_tasks"`
}

type v2Run struct {
	ExperimentID             string        `json:"experiment_id"`
	RunID                    string        `json:"run_id"`
	DisplayName              string        `json:"display_name"`
	StorageState             string        `json:"storage_state"`
	Description              string        `json:"description"`
	PipelineVersionID        string        `json:"pipeline_version_id"`
	PipelineVersionReference *v2VersionRef `json:"pipeline_version_reference"`
	ServiceAccount           string        `json:"service_account"`
	CreatedAt                ArgoTime      `json:"created_at"`
	ScheduledAt              ArgoTime      `json:"scheduled_at"`
	FinishedAt               ArgoTime      `json:"finished_at"`
	State                    string        `json:"state"`
	Error                    *v2Status     `json:"error"`
	RunDetails               *struct {
		TaskDetails []v2Task `json:"task_details"`
	} `json:"run_details"`
}

type v2ListRuns struct {
	Runs          []v2Run `json:"runs"`
	NextPageToken string  `json:"next_page_token"`
}

// v2 filter: predicates use "operation".
type v2Filter struct {
	Predicates []v2Predicate `json:"predicates"`
}

type v2Predicate struct {
	Key         string `json:"key"`
	Operation   string `json:"operation"`
	StringValue string `json:"string_value"`
}
