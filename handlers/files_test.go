package handlers

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestListFiles(t *testing.T) {
	ws := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"sub/deeper", ".hidden", "__pycache__"} {
		must(os.MkdirAll(filepath.Join(ws, d), 0o755))
	}
	for _, f := range []string{"b.py", "A.pipeline", "nb.ipynb", "x.R", "notes.txt", "sub/s.py", ".hidden/h.py"} {
		must(os.WriteFile(filepath.Join(ws, f), []byte("x"), 0o644))
	}
	must(os.WriteFile(filepath.Join(outside, "secret.py"), []byte("x"), 0o644))
	must(os.Symlink(outside, filepath.Join(ws, "escape")))
	must(os.Symlink(filepath.Join(ws, "sub"), filepath.Join(ws, "inside")))

	h := ListFiles(quiet(), ws)
	get := func(dir string) (int, fileListing) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/files?dir="+url.QueryEscape(dir), nil))
		var l fileListing
		if rec.Code == 200 {
			must(json.Unmarshal(rec.Body.Bytes(), &l))
		}
		return rec.Code, l
	}
	code, l := get("")
	if code != 200 {
		t.Fatalf("root: %d", code)
	}
	var names, kinds []string
	for _, e := range l.Entries {
		names = append(names, e.Name)
		kinds = append(kinds, e.Type+":"+e.Kind)
	}
	// Directories first (the inside link included, the escaping link not), then pipelines, then
	// other submittable files; hidden entries, caches and other files are left out.
	if want := []string{"inside", "sub", "A.pipeline", "b.py", "nb.ipynb", "x.R"}; !reflect.DeepEqual(names, want) {
		t.Errorf("root entries %v, want %v", names, want)
	}
	if want := []string{"dir:", "dir:", "file:pipeline", "file:python", "file:notebook", "file:r"}; !reflect.DeepEqual(kinds, want) {
		t.Errorf("root kinds %v, want %v", kinds, want)
	}
	if l.Dir != "" || l.Parent != nil {
		t.Errorf("root dir %q parent %v", l.Dir, l.Parent)
	}

	code, l = get("sub")
	if code != 200 || l.Dir != "sub" || l.Parent == nil || *l.Parent != "" || len(l.Entries) != 2 || l.Entries[1].Path != "sub/s.py" {
		t.Errorf("sub: %d %+v", code, l)
	}
	// A leading "/" means the workspace root, never the file system's.
	if code, _ := get("/etc"); code != 404 {
		t.Errorf("dir /etc: status %d, want 404 (workspace-relative)", code)
	}
	for _, bad := range []string{"..", "../x", "sub/../../x", "escape"} {
		if code, _ := get(bad); code != 400 {
			t.Errorf("dir %q: status %d, want 400", bad, code)
		}
	}
	if code, _ := get("missing"); code != 404 {
		t.Errorf("missing dir: %d, want 404", code)
	}
	if code, _ := get("b.py"); code != 404 {
		t.Errorf("a file as dir: %d, want 404", code)
	}
}
