package kfp

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Workflow is the part of an Argo Workflow (as KFP 1.x returns it in workflow_manifest) that the
// client reads. Spec is kept raw: the compilers own its shape.
type Workflow struct {
	Metadata WorkflowMeta    `json:"metadata"`
	Spec     json.RawMessage `json:"spec,omitempty"`
	Status   WorkflowStatus  `json:"status"`
}

// WorkflowMeta is the workflow's object metadata.
type WorkflowMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	UID         string            `json:"uid,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// WorkflowStatus is the workflow's status. After decoding, Nodes holds the node statuses even when
// Argo stored them in CompressedNodes.
type WorkflowStatus struct {
	Phase      string              `json:"phase"`
	Message    string              `json:"message,omitempty"`
	StartedAt  ArgoTime            `json:"startedAt"`
	FinishedAt ArgoTime            `json:"finishedAt"`
	Nodes      map[string]ArgoNode `json:"nodes,omitempty"`
	// CompressedNodes is base64(gzip(JSON nodes map)), set by Argo for workflows over its size
	// limit (status.nodes is then empty).
	CompressedNodes string `json:"compressedNodes,omitempty"`
	// OffloadNodeStatusVersion is set when Argo moved the nodes to its own database.
	OffloadNodeStatusVersion string `json:"offloadNodeStatusVersion,omitempty"`
}

// ArgoNode is one entry of status.nodes.
type ArgoNode struct {
	ID           string       `json:"id"`
	Name         string       `json:"name"`
	DisplayName  string       `json:"displayName"`
	Type         string       `json:"type"`
	TemplateName string       `json:"templateName,omitempty"`
	Phase        string       `json:"phase,omitempty"`
	BoundaryID   string       `json:"boundaryID,omitempty"`
	Message      string       `json:"message,omitempty"`
	StartedAt    ArgoTime     `json:"startedAt"`
	FinishedAt   ArgoTime     `json:"finishedAt"`
	Children     []string     `json:"children,omitempty"`
	Outputs      *NodeOutputs `json:"outputs,omitempty"`
	HostNodeName string       `json:"hostNodeName,omitempty"`
	PodIP        string       `json:"podIP,omitempty"`
}

// NodeOutputs are a node's outputs; only exitCode matters to the client.
type NodeOutputs struct {
	// ExitCode is the main container's exit code as Argo writes it (a string).
	ExitCode *string `json:"exitCode,omitempty"`
}

// ArgoTime is a Kubernetes timestamp that tolerates null and "" (Argo writes null for unset).
type ArgoTime struct{ time.Time }

// UnmarshalJSON accepts RFC3339 strings, null and "".
func (t *ArgoTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' && !bytes.ContainsRune(b, '\\') {
		// Fast path: timestamps never need unescaping.
		s = string(b[1 : len(b)-1])
	} else if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("argo time: %w", err)
	}
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return fmt.Errorf("argo time %q: %w", s, err)
	}
	if v.Unix() == 0 {
		// KFP writes the epoch for "not set" (e.g. finished_at of a running run).
		v = time.Time{}
	}
	t.Time = v
	return nil
}

// MarshalJSON writes null for the zero time, like Kubernetes does.
func (t ArgoTime) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.UTC().Format(time.RFC3339))
}

// maxDecompressedNodes bounds the inflated compressedNodes, so a hostile or broken server cannot
// make the client allocate without limit.
const maxDecompressedNodes = 256 << 20

// DecodeWorkflowManifest decodes the workflow_manifest string of a v1 run detail (a JSON document
// inside a JSON string, already unquoted by the caller) and inflates compressedNodes into Nodes.
func DecodeWorkflowManifest(manifest string) (*Workflow, error) {
	if strings.TrimSpace(manifest) == "" {
		return nil, nil
	}
	var wf Workflow
	if err := json.Unmarshal([]byte(manifest), &wf); err != nil {
		return nil, fmt.Errorf("decode workflow_manifest: %w", err)
	}
	if wf.Status.CompressedNodes != "" && len(wf.Status.Nodes) == 0 {
		nodes, err := DecompressNodes(wf.Status.CompressedNodes)
		if err != nil {
			return nil, fmt.Errorf("decode workflow_manifest: %w", err)
		}
		wf.Status.Nodes = nodes
	}
	return &wf, nil
}

// DecompressNodes inflates Argo's status.compressedNodes: base64 of gzip of the JSON nodes map.
func DecompressNodes(s string) (map[string]ArgoNode, error) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("compressedNodes: base64: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("compressedNodes: gzip: %w", err)
	}
	defer zr.Close()
	data, err := io.ReadAll(io.LimitReader(zr, maxDecompressedNodes+1))
	if err != nil {
		return nil, fmt.Errorf("compressedNodes: gzip: %w", err)
	}
	if len(data) > maxDecompressedNodes {
		return nil, fmt.Errorf("compressedNodes: inflated size over %d bytes", maxDecompressedNodes)
	}
	var nodes map[string]ArgoNode
	if err := json.Unmarshal(data, &nodes); err != nil {
		return nil, fmt.Errorf("compressedNodes: json: %w", err)
	}
	return nodes, nil
}

// CompressNodes is the inverse of DecompressNodes (used by fakes and emulators).
func CompressNodes(nodes map[string]ArgoNode) (string, error) {
	data, err := json.Marshal(nodes)
	if err != nil {
		return "", fmt.Errorf("compress nodes: %w", err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		return "", fmt.Errorf("compress nodes: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("compress nodes: %w", err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// ExitCode parses the node's outputs.exitCode; nil when absent or not a number.
func (n ArgoNode) ExitCode() *int {
	if n.Outputs == nil || n.Outputs.ExitCode == nil {
		return nil
	}
	v, err := strconv.Atoi(strings.TrimSpace(*n.Outputs.ExitCode))
	if err != nil {
		return nil
	}
	return &v
}

// stepStatusFromArgo normalizes one node.
func stepStatusFromArgo(n ArgoNode) StepStatus {
	phase := normalizeArgoPhase(n.Phase)
	if phase == PhaseFailed && terminatedMessage(n.Message) {
		phase = PhaseCancelled
	}
	return StepStatus{
		ID:           n.ID,
		Name:         n.Name,
		DisplayName:  n.DisplayName,
		TemplateName: n.TemplateName,
		Type:         n.Type,
		PodName:      n.ID,
		Phase:        phase,
		RawPhase:     n.Phase,
		ExitCode:     n.ExitCode(),
		Message:      n.Message,
		StartedAt:    n.StartedAt.Time,
		FinishedAt:   n.FinishedAt.Time,
	}
}

// statusFromWorkflow builds the normalized status of a v1 run from its run status string and its
// decoded workflow (which may be nil before the persistence agent reported it).
func statusFromWorkflow(runID, runStatus string, wf *Workflow) RunStatus {
	st := RunStatus{RunID: runID, RawState: runStatus}
	raw := runStatus
	if wf != nil {
		st.Message = wf.Status.Message
		st.FinishedAt = wf.Status.FinishedAt.Time
		if raw == "" {
			raw = wf.Status.Phase
		}
		st.NodesUnavailable = wf.Status.OffloadNodeStatusVersion != "" && len(wf.Status.Nodes) == 0
		for _, n := range wf.Status.Nodes {
			st.addNode(stepStatusFromArgo(n), n.Type == "Pod" || n.Type == "Container")
		}
	}
	st.RawState = raw
	st.State = normalizeArgoPhase(raw)
	if st.State == PhaseFailed && terminatedMessage(st.Message) {
		st.State = PhaseCancelled
	}
	st.sortNodes()
	return st
}

func sortSteps(s []StepStatus) {
	sort.SliceStable(s, func(i, j int) bool {
		a, b := s[i], s[j]
		if !a.StartedAt.Equal(b.StartedAt) {
			if a.StartedAt.IsZero() {
				return false
			}
			if b.StartedAt.IsZero() {
				return true
			}
			return a.StartedAt.Before(b.StartedAt)
		}
		return a.Name < b.Name
	})
}
