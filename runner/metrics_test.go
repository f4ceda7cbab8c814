package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Ensure metrics files are checked against KFP's rules: name pattern, numeric value, format, count.
func TestValidateMetrics(t *testing.T) {
	many := `{"metrics":[` + strings.TrimSuffix(strings.Repeat(`{"name":"m","numberValue":1},`, maxMetrics+1), ",") + `]}`
	for _, tc := range []struct {
		body, wantErr string
		n             int
	}{
		{body: `{"metrics":[{"name":"accuracy","numberValue":0.9,"format":"PERCENTAGE"},{"name":"a-b_c1","numberValue":3}]}`, n: 2},
		{body: `{"metrics":[]}`, n: 0},
		{body: `[1,2]`, wantErr: "not a JSON object"},
		{body: `{"metric":[]}`, wantErr: `no "metrics" array`},
		{body: `{"metrics":[{"name":"1st","numberValue":1}]}`, wantErr: "must match"},
		{body: `{"metrics":[{"name":"ends-with-","numberValue":1}]}`, wantErr: "must match"},
		{body: `{"metrics":[{"name":"` + strings.Repeat("a", 65) + `","numberValue":1}]}`, wantErr: "must match"},
		{body: `{"metrics":[{"name":"x","numberValue":"0.5"}]}`, wantErr: "not a number"},
		{body: `{"metrics":[{"name":"x"}]}`, wantErr: "not a number"},
		{body: `{"metrics":[{"name":"x","numberValue":1,"format":"raw"}]}`, wantErr: "RAW or PERCENTAGE"},
		{body: many, wantErr: "at most 50"},
	} {
		n, err := validateMetrics([]byte(tc.body))
		switch {
		case tc.wantErr == "" && (err != nil || n != tc.n):
			t.Errorf("%s: got %d, %v; want %d metrics", tc.body, n, err, tc.n)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%.80s: error %v, want one containing %q", tc.body, err, tc.wantErr)
		}
	}
}

// Ensure UI metadata is checked for the viewer types the KFP UI renders.
func TestValidateUIMetadata(t *testing.T) {
	for _, tc := range []struct{ body, wantErr string }{
		{body: `{"outputs":[{"type":"markdown","storage":"inline","source":"# x"},{"type":"table","format":"csv","header":["a"],"source":"s3://b/t.csv"}]}`},
		{body: `{"outputs":[]}`},
		{body: `{"output":[]}`, wantErr: `no "outputs" array`},
		{body: `{"outputs":[{"type":"image"}]}`, wantErr: "must be one of"},
		{body: `{"outputs":[{"type":"markdown","source":1}]}`, wantErr: "source must be a string"},
		{body: `not json`, wantErr: "not a JSON object"},
	} {
		_, err := validateUIMetadata([]byte(tc.body))
		if (tc.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want %q", tc.body, err, tc.wantErr)
		}
	}
}

// Ensure the executed notebook's name and key never equal the source's.
func TestOutputNotebookKey(t *testing.T) {
	for file, want := range map[string]string{
		"a.ipynb":              "runs/r/a-output.ipynb",
		"dir/sub/nb.ipynb":     "runs/r/dir/sub/nb-output.ipynb",
		"x-output.ipynb":       "runs/r/x-output-output.ipynb",
		"dir/Mixed.Case.IPYNB": "runs/r/dir/Mixed.Case-output.ipynb",
	} {
		if got := OutputNotebookKey("runs/r", file); got != want {
			t.Errorf("OutputNotebookKey(%q) = %q, want %q", file, got, want)
		}
	}
}

// Ensure the failing cell is found in an executed notebook (papermill mode) by execution count.
func TestNotebookError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "out.ipynb")
	os.WriteFile(p, []byte(`{"cells":[{"cell_type":"markdown","source":"x"},
{"cell_type":"code","execution_count":1,"outputs":[{"output_type":"stream","name":"stdout","text":"ok"}]},
{"cell_type":"code","execution_count":2,"outputs":[{"output_type":"error","ename":"KeyError","evalue":"'k'","traceback":[]}]},
{"cell_type":"code","execution_count":null,"outputs":[]}]}`), 0o644)
	f := notebookError(p)
	if f == nil || f.Error() != "cell 2: KeyError: 'k'" {
		t.Errorf("notebookError = %v, want cell 2: KeyError: 'k'", f)
	}
	if notebookError(filepath.Join(t.TempDir(), "missing.ipynb")) != nil {
		t.Error("a missing notebook reported an error cell")
	}
}
