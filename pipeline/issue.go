package pipeline

import (
	"fmt"
	"strings"
)

// Issue is Elyra's validation issue shape, as returned by POST /elyra/pipeline/validate and in the
// body of a 400 from schedule/export. Keeping the exact shape lets Elyra's frontend (and users'
// scripts written against Elyra) read kfbridge's answers unchanged.
type Issue struct {
	// Severity is SeverityError, SeverityWarning, SeverityInfo or SeverityHint.
	Severity int `json:"severity"`
	// Source is always IssueSource.
	Source string `json:"source"`
	// Type is one of the Type* constants.
	Type    string `json:"type"`
	Message string `json:"message"`
	// Data names what the issue is about: nodeID, nodeName, propertyName, value for node issues,
	// pipelineRuntime for runtime issues, parameterName for parameter issues.
	Data map[string]any `json:"data,omitempty"`
}

// Issue severities (Elyra's numbering, which follows the LSP diagnostic severities).
const (
	SeverityError   = 1
	SeverityWarning = 2
	SeverityInfo    = 3
	SeverityHint    = 4
)

// IssueSource is the source of every issue; it is Elyra's string so clients that filter on it work.
const IssueSource = "Elyra Pipeline Validation Service"

// Issue types (Elyra's names).
const (
	TypeInvalidJSON              = "invalidJSON"
	TypeInvalidRuntime           = "invalidRuntime"
	TypeInvalidPipeline          = "invalidPipeline"
	TypeInvalidNodeType          = "invalidNodeType"
	TypeInvalidNodeProperty      = "invalidNodeProperty"
	TypeInvalidFilePath          = "invalidFilePath"
	TypeInvalidFileType          = "invalidFileType"
	TypeInvalidNodeLabel         = "invalidNodeLabel"
	TypeCircularReference        = "circularReference"
	TypeSingletonReference       = "singletonReference"
	TypeInvalidPipelineParameter = "invalidPipelineParameter"
)

// Keys used in Issue.Data.
const (
	DataNodeID        = "nodeID"
	DataNodeName      = "nodeName"
	DataPropertyName  = "propertyName"
	DataValue         = "value"
	DataRuntime       = "pipelineRuntime"
	DataParameterName = "parameterName"
	DataNodeIDList    = "nodeIDList"
)

// HasErrors reports whether any issue has error severity.
func HasErrors(issues []Issue) bool {
	for _, is := range issues {
		if is.Severity == SeverityError {
			return true
		}
	}
	return false
}

// String renders an issue as one human-readable line, e.g. for `kfbridge validate` output:
// "error invalidFilePath: node "train" (b2) property filename: ... [value: ../x.py]".
func (is Issue) String() string {
	var b strings.Builder
	b.WriteString(severityName(is.Severity))
	b.WriteString(" ")
	b.WriteString(is.Type)
	b.WriteString(": ")
	if name, id := is.Data[DataNodeName], is.Data[DataNodeID]; id != nil {
		fmt.Fprintf(&b, "node %q (%v)", fmt.Sprint(name), id)
		if prop := is.Data[DataPropertyName]; prop != nil {
			fmt.Fprintf(&b, " property %v", prop)
		}
		b.WriteString(": ")
	}
	b.WriteString(is.Message)
	if v, ok := is.Data[DataValue]; ok && v != nil && v != "" {
		fmt.Fprintf(&b, " [value: %v]", v)
	}
	return b.String()
}

func severityName(s int) string {
	switch s {
	case SeverityError:
		return "error"
	case SeverityWarning:
		return "warning"
	case SeverityInfo:
		return "info"
	case SeverityHint:
		return "hint"
	}
	return fmt.Sprintf("severity-%d", s)
}

func newIssue(sev int, typ, msg string, data map[string]any) Issue {
	return Issue{Severity: sev, Source: IssueSource, Type: typ, Message: msg, Data: data}
}

// nodeData is the Data of an issue about one node property.
func nodeData(n *Node, prop string, value any) map[string]any {
	d := map[string]any{DataNodeID: n.ID, DataNodeName: n.Label}
	if prop != "" {
		d[DataPropertyName] = prop
	}
	if value != nil {
		d[DataValue] = value
	}
	return d
}
