package pipeline

import (
	"encoding/json"
	"testing"
)

// The JSON shape is Elyra's, field for field, so Elyra's frontend can render kfbridge's issues.
func TestIssueJSON(t *testing.T) {
	n := &Node{ID: "b2", Label: "train"}
	is := newIssue(SeverityError, TypeInvalidFilePath, "bad path", nodeData(n, "filename", "../x.py"))
	b, err := json.Marshal(is)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"severity":1,"source":"Elyra Pipeline Validation Service","type":"invalidFilePath","message":"bad path",` +
		`"data":{"nodeID":"b2","nodeName":"train","propertyName":"filename","value":"../x.py"}}`
	if string(b) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", b, want)
	}
	b, _ = json.Marshal(newIssue(SeverityWarning, TypeInvalidPipeline, "m", nil))
	if string(b) != `{"severity":2,"source":"Elyra Pipeline Validation Service","type":"invalidPipeline","message":"m"}` {
		t.Errorf("JSON without data = %s", b)
	}
	if got := is.String(); got != `error invalidFilePath: node "train" (b2) property filename: bad path [value: ../x.py]` {
		t.Errorf("String() = %q", got)
	}
	if got := newIssue(SeverityHint, TypeInvalidRuntime, "m", map[string]any{DataRuntime: "X"}).String(); got != "hint invalidRuntime: m" {
		t.Errorf("String() = %q", got)
	}
}

func TestHasErrors(t *testing.T) {
	if HasErrors(nil) || HasErrors([]Issue{{Severity: SeverityWarning}, {Severity: SeverityInfo}}) {
		t.Error("warnings are not errors")
	}
	if !HasErrors([]Issue{{Severity: SeverityWarning}, {Severity: SeverityError}}) {
		t.Error("missed an error")
	}
}
