package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestConfine(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "ws")
	writeFile(t, root, "a/b.py")
	writeFile(t, base, "outside.txt")
	mustSymlink(t, filepath.Join(root, "a"), filepath.Join(root, "in-link"))
	mustSymlink(t, base, filepath.Join(root, "out-link"))
	mustSymlink(t, filepath.Join(base, "outside.txt"), filepath.Join(root, "a", "out-file"))

	ok := map[string]string{
		"a/b.py":          "a/b.py",
		"./a/b.py":        "a/b.py",
		"a//b.py":         "a/b.py",
		"new/file.py":     "new/file.py", // not existing yet is fine: it is inside
		"in-link/b.py":    "in-link/b.py",
		".":               ".",
		"a/not-yet/x.txt": "a/not-yet/x.txt",
	}
	for rel, want := range ok {
		got, err := Confine(root, rel)
		if err != nil {
			t.Errorf("Confine(%q): %v", rel, err)
			continue
		}
		if w := filepath.Join(root, filepath.FromSlash(want)); got != w {
			t.Errorf("Confine(%q) = %q, want %q", rel, got, w)
		}
	}
	bad := map[string]error{
		"":                     ErrEmptyPath,
		"/etc/passwd":          ErrAbsolutePath,
		`\windows`:             ErrAbsolutePath,
		"C:/x":                 ErrAbsolutePath,
		"../outside.txt":       ErrParentPath,
		"a/../../outside.txt":  ErrParentPath,
		"a/..":                 ErrParentPath,
		"out-link/outside.txt": ErrOutsideRoot,
		"out-link":             ErrOutsideRoot,
		"out-link/new.txt":     ErrOutsideRoot, // the existing prefix already leaves the root
		"a/out-file":           ErrOutsideRoot,
	}
	for rel, want := range bad {
		_, err := Confine(root, rel)
		if !errors.Is(err, want) {
			t.Errorf("Confine(%q) error = %v, want %v", rel, err, want)
		}
		if err != nil && !strings.Contains(err.Error(), "confine") {
			t.Errorf("Confine(%q) error %q lacks context", rel, err)
		}
	}
	if _, err := Confine(filepath.Join(base, "missing"), "x"); err == nil {
		t.Error("a missing root must be an error")
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestNodeFiles(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "ws")
	for _, f := range []string{
		"top.py", "proj/run.ipynb", "proj/util.py", "proj/b.py", "proj/.env", "proj/data/x.csv",
		"proj/data/deep/y.csv", "proj/data/.cache/z.csv", "proj/.git/config", "proj/conf/a.yaml", "proj/conf/b.yml",
		"shared/lib.py",
	} {
		writeFile(t, root, f)
	}
	writeFile(t, base, "secret.csv")
	mustSymlink(t, base, filepath.Join(root, "proj", "out"))
	mustSymlink(t, filepath.Join(root, "shared"), filepath.Join(root, "proj", "shared"))            // inside: followed
	mustSymlink(t, filepath.Join(base, "secret.csv"), filepath.Join(root, "proj", "data", "s.csv")) // outside: ignored

	cases := []struct {
		name    string
		file    string
		deps    []string
		sub     bool
		dir     string
		want    []string
		wantErr error
	}{
		{name: "top level, no deps", file: "top.py", dir: ".", want: []string{"top.py"}},
		{name: "literal files", file: "proj/run.ipynb", deps: []string{"util.py", "./b.py", "util.py"},
			dir: "proj", want: []string{"run.ipynb", "b.py", "util.py"}},
		{name: "star is every visible file of the dir", file: "proj/run.ipynb", deps: []string{"*"},
			dir: "proj", want: []string{"run.ipynb", "b.py", "util.py"}},
		{name: "star with subdirectories", file: "proj/run.ipynb", deps: []string{"*"}, sub: true, dir: "proj",
			want: []string{"run.ipynb", "b.py", "conf/a.yaml", "conf/b.yml", "data/deep/y.csv", "data/x.csv", "shared/lib.py", "util.py"}},
		{name: "glob into a subdirectory", file: "proj/run.ipynb", deps: []string{"conf/*.yaml"}, dir: "proj",
			want: []string{"run.ipynb", "conf/a.yaml"}},
		{name: "recursive glob", file: "proj/run.ipynb", deps: []string{"*.csv"}, sub: true, dir: "proj",
			want: []string{"run.ipynb", "data/deep/y.csv", "data/x.csv"}},
		{name: "directory, direct files only", file: "proj/run.ipynb", deps: []string{"data"}, dir: "proj",
			want: []string{"run.ipynb", "data/x.csv"}},
		{name: "directory, recursive", file: "proj/run.ipynb", deps: []string{"data"}, sub: true, dir: "proj",
			want: []string{"run.ipynb", "data/deep/y.csv", "data/x.csv"}},
		{name: "hidden file named explicitly", file: "proj/run.ipynb", deps: []string{".env"}, dir: "proj",
			want: []string{"run.ipynb", ".env"}},
		{name: "hidden files by dot glob", file: "proj/run.ipynb", deps: []string{".e*"}, dir: "proj",
			want: []string{"run.ipynb", ".env"}},
		{name: "symlinked dir inside root", file: "proj/run.ipynb", deps: []string{"shared/*.py"}, dir: "proj",
			want: []string{"run.ipynb", "shared/lib.py"}},
		{name: "node file listed as dependency too", file: "proj/run.ipynb", deps: []string{"run.ipynb", "*.ipynb"}, dir: "proj",
			want: []string{"run.ipynb"}},
		{name: "missing literal", file: "proj/run.ipynb", deps: []string{"nope.py"}, wantErr: ErrNoMatch},
		{name: "glob without match", file: "proj/run.ipynb", deps: []string{"*.parquet"}, wantErr: ErrNoMatch},
		{name: "bad glob", file: "proj/run.ipynb", deps: []string{"[x"}, wantErr: ErrBadGlob},
		{name: "glob below a file", file: "proj/run.ipynb", deps: []string{"util.py/*"}, wantErr: ErrNoMatch},
		{name: "glob below a missing dir", file: "proj/run.ipynb", deps: []string{"nope/*.csv"}, wantErr: ErrNoMatch},
		{name: "glob below a symlink out", file: "proj/run.ipynb", deps: []string{"out/*.csv"}, wantErr: ErrOutsideRoot},
		{name: "glob with a wildcard directory", file: "proj/run.ipynb", deps: []string{"*/*.y*ml"}, dir: "proj",
			want: []string{"run.ipynb", "conf/a.yaml", "conf/b.yml"}},
		{name: "parent escape", file: "proj/run.ipynb", deps: []string{"../top.py"}, wantErr: ErrParentPath},
		{name: "absolute", file: "proj/run.ipynb", deps: []string{"/etc/passwd"}, wantErr: ErrAbsolutePath},
		{name: "symlink to outside", file: "proj/run.ipynb", deps: []string{"data/s.csv"}, wantErr: ErrOutsideRoot},
		{name: "node file escapes", file: "../x.py", wantErr: ErrParentPath},
		{name: "node file missing", file: "proj/missing.py", wantErr: os.ErrNotExist},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := &Node{ID: "n", Label: "n", Filename: c.file, Dependencies: c.deps, IncludeSubdirectories: c.sub}
			dir, files, err := NodeFiles(root, n)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("error = %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if dir != c.dir || !slices.Equal(files, c.want) {
				t.Errorf("NodeFiles = %q %q,\n want %q %q", dir, files, c.dir, c.want)
			}
			for _, f := range files {
				if strings.Contains(f, "secret") || strings.Contains(f, ".git") || strings.Contains(f, ".cache") {
					t.Errorf("packaged %q", f)
				}
			}
		})
	}
}

func TestNodeFilesReportsEveryBadDependency(t *testing.T) {
	root := workspace(t, "a.py")
	_, _, err := NodeFiles(root, &Node{ID: "n", Filename: "a.py", Dependencies: []string{"x.txt", "*.csv"}})
	var de *DependencyError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), `"x.txt"`) || !strings.Contains(err.Error(), `"*.csv"`) {
		t.Fatalf("error = %v, want both dependencies named", err)
	}
}

// A symlink back to an ancestor directory must not make the walk endless: every real directory
// is listed once, under the first path that reached it.
func TestNodeFilesSymlinkLoop(t *testing.T) {
	root := workspace(t, "p/run.py", "p/d/x.txt")
	mustSymlink(t, filepath.Join(root, "p"), filepath.Join(root, "p", "d", "loop"))
	mustSymlink(t, filepath.Join(root, "p", "d"), filepath.Join(root, "p", "d", "self"))
	_, files, err := NodeFiles(root, &Node{ID: "n", Filename: "p/run.py", Dependencies: []string{"*"}, IncludeSubdirectories: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"run.py", "d/x.txt"}; !slices.Equal(files, want) {
		t.Errorf("files = %q, want %q", files, want)
	}
	_, files, err = NodeFiles(root, &Node{ID: "n", Filename: "p/run.py", Dependencies: []string{"d"}, IncludeSubdirectories: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"run.py", "d/loop/run.py", "d/x.txt"}; !slices.Equal(files, want) {
		t.Errorf("files = %q, want %q", files, want)
	}
}
