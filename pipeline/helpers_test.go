package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// workspace creates files (slash-separated paths relative to a fresh temp dir) and returns the
// dir. Content defaults to a line naming the file.
func workspace(t testing.TB, files ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range files {
		writeFile(t, root, f)
	}
	return root
}

func writeFile(t testing.TB, root, rel string) {
	t.Helper()
	abs := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(abs, []byte("# "+rel+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// find returns the issues of the given type.
func find(issues []Issue, typ string) []Issue {
	var out []Issue
	for _, is := range issues {
		if is.Type == typ {
			out = append(out, is)
		}
	}
	return out
}

// findOne returns the single issue of typ whose data matches every key in want; the test fails
// if there is not exactly one.
func findOne(t *testing.T, issues []Issue, typ string, want map[string]any) Issue {
	t.Helper()
	var hits []Issue
	for _, is := range find(issues, typ) {
		if dataMatches(is.Data, want) {
			hits = append(hits, is)
		}
	}
	if len(hits) != 1 {
		t.Fatalf("want exactly one %s issue with data %v, got %d; all issues:\n%s", typ, want, len(hits), dump(issues))
	}
	if hits[0].Source != IssueSource {
		t.Errorf("issue source = %q, want %q", hits[0].Source, IssueSource)
	}
	return hits[0]
}

func dataMatches(data, want map[string]any) bool {
	for k, v := range want {
		got, ok := data[k]
		if !ok {
			return false
		}
		if gs, ok := got.([]string); ok {
			ws, ok := v.([]string)
			if !ok || strings.Join(gs, "\x00") != strings.Join(ws, "\x00") {
				return false
			}
			continue
		}
		if got != v {
			return false
		}
	}
	return true
}

func dump(issues []Issue) string {
	var b strings.Builder
	for _, is := range issues {
		b.WriteString("  ")
		b.WriteString(is.String())
		b.WriteString("\n")
	}
	return b.String()
}

// errorsOf returns the error-severity issues.
func errorsOf(issues []Issue) []Issue {
	var out []Issue
	for _, is := range issues {
		if is.Severity == SeverityError {
			out = append(out, is)
		}
	}
	return out
}
