package kfp

import (
	"encoding/json"
	"strings"
	"time"
)

// API versions.
const (
	V1Beta1 = "v1beta1"
	V2Beta1 = "v2beta1"
	// Auto picks v2beta1 when the server answers its healthz, else v1beta1.
	Auto = "auto"
)

// Phase is a version-neutral state of a run or of one step.
type Phase string

// Normalized phases. Steps use pending..cancelled; a run can also be cancelling (terminate was
// requested and KFP has not finished stopping it).
const (
	PhasePending    Phase = "pending"
	PhaseRunning    Phase = "running"
	PhaseSucceeded  Phase = "succeeded"
	PhaseFailed     Phase = "failed"
	PhaseSkipped    Phase = "skipped"
	PhaseCancelled  Phase = "cancelled"
	PhaseCancelling Phase = "cancelling"
)

// Terminal reports whether the phase can no longer change.
func (p Phase) Terminal() bool {
	switch p {
	case PhaseSucceeded, PhaseFailed, PhaseSkipped, PhaseCancelled:
		return true
	}
	return false
}

// Healthz is the answer of GET /apis/{version}/healthz.
type Healthz struct {
	// APIVersion is the version whose healthz answered.
	APIVersion string
	// MultiUser is true on a multi-user (Kubeflow profiles) deployment: experiments and runs are
	// namespaced and the client must know the user namespace.
	MultiUser bool
	// PipelineStore is reported by recent 2.x servers ("database" or "kubernetes"); may be empty.
	PipelineStore string
}

// Pipeline is a KFP pipeline (v1 apiPipeline / v2 Pipeline).
type Pipeline struct {
	ID          string
	Name        string
	DisplayName string
	Description string
	// Namespace is set for namespaced (private) pipelines on v2.
	Namespace string
	CreatedAt time.Time
	// DefaultVersionID is known on v1 (default_version); on v2 the client fills it after an upload.
	DefaultVersionID string
}

// PipelineVersion is one uploaded version of a pipeline.
type PipelineVersion struct {
	ID          string
	PipelineID  string
	Name        string
	DisplayName string
	Description string
	CreatedAt   time.Time
}

// Experiment groups runs; in multi-user mode it lives in one namespace.
type Experiment struct {
	ID          string
	Name        string
	Description string
	Namespace   string
	CreatedAt   time.Time
}

// Run is the version-neutral summary of a run.
type Run struct {
	ID           string
	Name         string
	Description  string
	ExperimentID string
	PipelineID   string
	VersionID    string
	// State is the normalized run state; RawState is what KFP said (v1 status / v2 state).
	State      Phase
	RawState   string
	Error      string
	CreatedAt  time.Time
	FinishedAt time.Time
}

// RunStatus is what a watcher needs on every poll: the run's state and one entry per step.
type RunStatus struct {
	RunID    string
	State    Phase
	RawState string
	// Message is the workflow message or the v2 run error, if any.
	Message    string
	FinishedAt time.Time
	// Steps are the user steps (Argo Pod nodes on v1; executor tasks on v2), sorted by start time
	// then name. DAG, driver and other bookkeeping nodes are left out; see AllNodes.
	Steps []StepStatus
	// AllNodes are every node/task KFP reported, including DAG and driver nodes.
	AllNodes []StepStatus
	// NodesUnavailable is true when KFP has the run but its node statuses are not readable:
	// Argo offloaded them to its own database (offloadNodeStatusVersion), which KFP cannot return.
	NodesUnavailable bool
}

// Step returns the step whose DisplayName, TemplateName or Name equals key, or nil.
func (s *RunStatus) Step(key string) *StepStatus {
	for i := range s.Steps {
		st := &s.Steps[i]
		if st.DisplayName == key || st.TemplateName == key || st.Name == key || st.ID == key {
			return st
		}
	}
	return nil
}

// StepStatus is the normalized status of one node (v1) or task (v2).
type StepStatus struct {
	// ID is the Argo node ID (v1) or the task ID (v2).
	ID string
	// Name is the Argo node name ("<workflow>.<task>") or, on v2, the display name.
	Name string
	// DisplayName is the DAG task name as the compiler wrote it.
	DisplayName string
	// TemplateName is the Argo template (v1) of the node; empty on v2.
	TemplateName string
	// Type is the Argo node type (Pod, DAG, ...) on v1; on v2 "Pod" for executor tasks, "DAG" for
	// tasks with children and "Driver" for driver tasks.
	Type string
	// PodName is the pod that ran the step when known (v2 pod_name; v1 the node ID).
	PodName    string
	Phase      Phase
	RawPhase   string
	ExitCode   *int
	Message    string
	StartedAt  time.Time
	FinishedAt time.Time
}

// UploadRequest is a pipeline package to upload.
type UploadRequest struct {
	// Name of the pipeline (upload) or of the version (upload_version). Required.
	Name string
	// DisplayName is sent on v2 only; defaults to Name there.
	DisplayName string
	Description string
	// Filename of the multipart part; it must end in .yaml/.yml/.json (KFP picks the parser by
	// suffix). Default "<sanitized Name>.yaml".
	Filename string
	// Content is the compiled package (Argo Workflow YAML/JSON for v1, IR YAML/JSON for v2).
	Content []byte
	// Namespace uploads a private (namespaced) pipeline; v2 only. Empty means shared.
	Namespace string
}

// RunRequest describes a run to create. Exactly one source: PipelineID/VersionID (stored) or
// WorkflowManifest (v1 inline) or PipelineSpec (v2 inline).
type RunRequest struct {
	// Name is the run's name (v1 name, v2 display_name). Required; the client uses it to find a run
	// it may already have created when a create request's outcome was ambiguous, so make it unique
	// per submission (Elyra uses "<pipeline>-<MMDDHHMMSS>").
	Name         string
	Description  string
	ExperimentID string
	PipelineID   string
	VersionID    string
	// WorkflowManifest is an inline Argo Workflow as JSON (v1). YAML is rejected by KFP.
	WorkflowManifest json.RawMessage
	// PipelineSpec is an inline IR PipelineSpec as JSON (v2).
	PipelineSpec json.RawMessage
	// Parameters are pipeline parameters; v1 sends them as strings.
	Parameters map[string]any
	// PipelineRoot is v2 runtime_config.pipeline_root; optional.
	PipelineRoot   string
	ServiceAccount string
}

// ListRunsRequest filters ListRuns.
type ListRunsRequest struct {
	ExperimentID string
	// Name keeps only runs with exactly this name.
	Name      string
	PageSize  int
	PageToken string
	// SortBy, e.g. "created_at desc"; default KFP's order.
	SortBy string
}

// RunDetail is GET run's answer: the summary, the decoded per-version detail and the status.
type RunDetail struct {
	Run Run
	// Workflow is the decoded v1 workflow_manifest (nil on v2 or before the run started).
	Workflow *Workflow
	// Tasks are the v2 task details (nil on v1).
	Tasks []TaskDetail
	// Status is the normalized view of the above.
	Status RunStatus
}

// TaskDetail is the part of a v2 PipelineTaskDetail the client decodes.
type TaskDetail struct {
	TaskID       string
	DisplayName  string
	State        string
	PodName      string
	ParentTaskID string
	ChildTasks   []string
	StartTime    time.Time
	EndTime      time.Time
	CreateTime   time.Time
	Error        string
	MainJob      string
}

// normalizeArgoPhase maps Argo workflow/node phases and KFP 1.x run statuses.
func normalizeArgoPhase(p string) Phase {
	switch strings.ToLower(p) {
	case "", "pending", "unknown":
		return PhasePending
	case "running":
		return PhaseRunning
	case "succeeded", "completed", "cached":
		return PhaseSucceeded
	case "skipped", "omitted":
		return PhaseSkipped
	case "failed", "error":
		return PhaseFailed
	case "terminating":
		return PhaseCancelling
	case "terminated", "cancelled", "canceled":
		return PhaseCancelled
	}
	return PhasePending
}

// normalizeV2State maps v2beta1 RuntimeState.
func normalizeV2State(s string) Phase {
	switch s {
	case "RUNNING":
		return PhaseRunning
	case "SUCCEEDED":
		return PhaseSucceeded
	case "SKIPPED":
		return PhaseSkipped
	case "FAILED":
		return PhaseFailed
	case "CANCELING":
		return PhaseCancelling
	case "CANCELED":
		return PhaseCancelled
	}
	// PENDING, PAUSED, RUNTIME_STATE_UNSPECIFIED, empty.
	return PhasePending
}

// terminatedMessage reports whether an Argo Failed message means the run was terminated: KFP's
// terminate sets activeDeadlineSeconds to 0, which Argo reports as an exceeded deadline, and
// `argo terminate` reports its shutdown strategy.
func terminatedMessage(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "max duration limit exceeded") ||
		strings.Contains(m, "stopped with strategy 'terminate'") ||
		strings.Contains(m, "stopped with strategy 'stop'") ||
		strings.Contains(m, "active on the node longer than the specified deadline") ||
		strings.Contains(m, "terminated")
}
