package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMatchPath(t *testing.T) {
	cases := []struct {
		pattern, rel string
		want         bool
	}{
		{"model.pkl", "model.pkl", true},
		{"model.pkl", "model.pkl.bak", false},
		{"out", "out/a.csv", true},      // a literal directory matches everything below it
		{"out", "outside.csv", false},   // but is not a string prefix
		{"*.csv", "a.csv", true},        //
		{"*.csv", "sub/a.csv", false},   // * does not cross directories
		{"*.csv", "a.csv/part-0", true}, // a matched directory level includes its contents
		{"out/*.csv", "out/x.csv", true},
		{"out/*.csv", "out/x.txt", false},
		{"**/*.csv", "a/b/c.csv", true},
		{"**/*.csv", "c.csv", true},
		{"out/**", "out/a/b", true},
		{"data-[0-9].bin", "data-7.bin", true},
		{"data-[0-9].bin", "data-x.bin", false},
	}
	for _, c := range cases {
		if got := MatchPath(c.pattern, c.rel); got != c.want {
			t.Errorf("MatchPath(%q, %q) = %v, want %v", c.pattern, c.rel, got, c.want)
		}
	}
}

func TestFileHelpers(t *testing.T) {
	ctx := context.Background()
	s, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a.csv": "1", "b.csv": "2", "m/model.pkl": "w", "m/sub/x.json": "{}", "readme": "r"})
	run := RunDir("pfx", "run-1")
	for _, rel := range []string{"a.csv", "b.csv", "m/model.pkl", "m/sub/x.json", "readme"} {
		if err := PutFile(ctx, s, OutputKey(run, rel), filepath.Join(src, rel)); err != nil {
			t.Fatal(err)
		}
	}
	if err := PutFile(ctx, s, "x", src); err == nil {
		t.Error("PutFile uploaded a directory")
	}
	keys := func(pattern string) string {
		t.Helper()
		list, err := ListGlob(ctx, s, run, pattern)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, i := range list {
			out = append(out, strings.TrimPrefix(i.Key, run+"/"))
		}
		return strings.Join(out, " ")
	}
	for pattern, want := range map[string]string{
		"*.csv":       "a.csv b.csv",
		"m":           "m/model.pkl m/sub/x.json",
		"m/*.pkl":     "m/model.pkl",
		"**/*.json":   "m/sub/x.json",
		"readme":      "readme",
		"nothing*":    "",
		"./m/sub/../": "m/model.pkl m/sub/x.json",
	} {
		if got := keys(pattern); got != want {
			t.Errorf("ListGlob(%q) = %q, want %q", pattern, got, want)
		}
	}
	if _, err := ListGlob(ctx, s, run, "../other"); err == nil {
		t.Error("ListGlob accepted a pattern leaving the directory")
	}
	if _, err := ListGlob(ctx, s, run, "[bad"); err == nil {
		t.Error("ListGlob accepted a malformed pattern")
	}

	dst := filepath.Join(t.TempDir(), "deep", "model.pkl")
	if err := GetFile(ctx, s, OutputKey(run, "m/model.pkl"), dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "w" {
		t.Fatalf("GetFile: %q %v", b, err)
	}
	missing := filepath.Join(filepath.Dir(dst), "missing")
	if err := GetFile(ctx, s, OutputKey(run, "missing"), missing); !errors.Is(err, ErrNotExist) {
		t.Fatalf("GetFile of a missing key: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(dst)); len(entries) != 1 {
		t.Fatalf("GetFile left files behind: %v", entries)
	}
}
