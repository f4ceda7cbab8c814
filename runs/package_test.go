package runs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/runs"
	"github.com/kfbridge/kfbridge/storage"
	"github.com/kfbridge/kfbridge/storage/s3test"
)

// workspace writes a three-node workspace and returns its root and pipeline.
func workspace(t *testing.T) (string, *pipeline.Pipeline) {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"load/load.py":          "print('load')\n",
		"load/raw.csv":          strings.Repeat("1,2,3\n", 5000),
		"load/.hidden/skip.txt": "hidden dirs are skipped",
		"train/train.ipynb":     `{"cells":[],"metadata":{},"nbformat":4,"nbformat_minor":5}`,
		"train/lib/model.py":    "W = 1\n",
		"train/lib/deep/x.py":   "X = 2\n",
		"report/report.r":       "print('r')\n",
	}
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := &pipeline.Pipeline{Name: "demo", Nodes: []*pipeline.Node{
		{ID: "n-load", Label: "Load", Kind: pipeline.KindPython, Op: pipeline.OpPython, Filename: "load/load.py", Dependencies: []string{"*.csv"}},
		{ID: "n-train", Label: "Train", Kind: pipeline.KindNotebook, Op: pipeline.OpNotebook, Filename: "train/train.ipynb",
			Dependencies: []string{"lib"}, IncludeSubdirectories: true, Parents: []string{"n-load"}},
		{ID: "n-report", Label: "Report", Kind: pipeline.KindR, Op: pipeline.OpR, Filename: "report/report.r", Parents: []string{"n-train"}},
	}}
	return root, p
}

// recorder collects progress reports.
type recorder struct {
	mu     sync.Mutex
	phases map[string][]string
	last   map[string]runs.Progress
}

func (r *recorder) fn(p runs.Progress) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.phases == nil {
		r.phases, r.last = map[string][]string{}, map[string]runs.Progress{}
	}
	ph := r.phases[p.NodeID]
	if len(ph) == 0 || ph[len(ph)-1] != p.Phase {
		r.phases[p.NodeID] = append(ph, p.Phase)
	}
	r.last[p.NodeID] = p
}

func readObject(t *testing.T, s storage.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// packageAndCheck runs the whole issue-4 packaging story against one store.
func packageAndCheck(t *testing.T, st storage.Store) {
	ctx := context.Background()
	root, p := workspace(t)
	rec := &recorder{}
	got, err := runs.Package(ctx, st, "team", root, p, runs.PackageOptions{Progress: rec.fn})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("archives: %+v", got)
	}
	wantFiles := map[string][]string{
		"n-load":   {"load.py", "raw.csv"},
		"n-train":  {"train.ipynb", "lib/model.py", "lib/deep/x.py"},
		"n-report": {"report.r"},
	}
	for id, a := range got {
		if a.NodeID != id || !a.Uploaded || a.Files != len(wantFiles[id]) {
			t.Errorf("%s: %+v", id, a)
		}
		body := readObject(t, st, a.Key)
		sum := sha256.Sum256(body)
		if hex.EncodeToString(sum[:]) != a.SHA256 || int64(len(body)) != a.Size {
			t.Errorf("%s: stored object does not match its sha256/size", id)
		}
		if a.Key != storage.ArchiveKey("team", strings.TrimSuffix(filepath.Base(p.Node(id).Filename), filepath.Ext(p.Node(id).Filename)), a.SHA256) {
			t.Errorf("%s: key %s is not content-addressed", id, a.Key)
		}
		dest := t.TempDir()
		if err := storage.ExtractArchive(ctx, bytes.NewReader(body), dest); err != nil {
			t.Fatal(err)
		}
		for _, f := range wantFiles[id] {
			if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
				t.Errorf("%s: archive lacks %s", id, f)
			}
		}
		if _, err := os.Stat(filepath.Join(dest, ".hidden")); err == nil {
			t.Errorf("%s: hidden directory archived", id)
		}
		if ph := strings.Join(rec.phases[id], ","); ph != "packaging,uploading,done" {
			t.Errorf("%s: phases %s", id, ph)
		}
		if l := rec.last[id]; l.Bytes != a.Size || l.TotalBytes != a.Size || l.Files != a.Files || l.Key != a.Key {
			t.Errorf("%s: final progress %+v, archive %+v", id, l, a)
		}
	}

	// Resubmit with nothing changed: same keys, nothing uploaded.
	rec2 := &recorder{}
	again, err := runs.Package(ctx, st, "team", root, p, runs.PackageOptions{Progress: rec2.fn})
	if err != nil {
		t.Fatal(err)
	}
	for id, a := range again {
		if a.Uploaded || a.Key != got[id].Key || a.SHA256 != got[id].SHA256 || a.Size != got[id].Size {
			t.Errorf("resubmit %s: %+v (first %+v)", id, a, got[id])
		}
		if ph := strings.Join(rec2.phases[id], ","); ph != "packaging,deduplicated" {
			t.Errorf("resubmit %s: phases %s", id, ph)
		}
	}

	// Packaging from scratch (another prefix, so no index entry) gives byte-identical archives.
	fresh, err := runs.Package(ctx, st, "other", root, p, runs.PackageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for id, a := range fresh {
		if !a.Uploaded || a.SHA256 != got[id].SHA256 || !bytes.Equal(readObject(t, st, a.Key), readObject(t, st, got[id].Key)) {
			t.Errorf("repackaging %s is not byte-identical: %+v vs %+v", id, a, got[id])
		}
	}

	// Change one file of one node: only that node's archive changes and is uploaded.
	if err := os.WriteFile(filepath.Join(root, "train/lib/deep/x.py"), []byte("X = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := runs.Package(ctx, st, "team", root, p, runs.PackageOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for id, a := range changed {
		if id == "n-train" {
			if a.Key == got[id].Key || !a.Uploaded {
				t.Errorf("changed node %s: %+v", id, a)
			}
		} else if a.Key != got[id].Key || a.Uploaded {
			t.Errorf("unchanged node %s: %+v (was %+v)", id, a, got[id])
		}
	}
	// The old archive is still there for runs that use it.
	if _, err := st.Stat(ctx, got["n-train"].Key); err != nil {
		t.Errorf("old archive gone: %v", err)
	}
}

func TestPackageLocal(t *testing.T) {
	st, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	packageAndCheck(t, st)
}

func TestPackageS3(t *testing.T) {
	srv := s3test.Start(t)
	st, err := storage.Open(context.Background(), storage.Config{Endpoint: srv.Endpoint, Bucket: "pkg",
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	packageAndCheck(t, st)
	// The archives are real objects in the bucket under their keys.
	list, err := st.List(context.Background(), "team/archives/")
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range list {
		if _, err := os.Stat(filepath.Join(srv.Dir, "pkg", filepath.FromSlash(i.Key))); err != nil {
			t.Errorf("listed object %s not on the server's disk: %v", i.Key, err)
		}
	}
}

func TestPackageErrorNamesNode(t *testing.T) {
	st, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root, p := workspace(t)
	p.Node("n-train").Dependencies = []string{"missing.txt"}
	_, err = runs.Package(context.Background(), st, "", root, p, runs.PackageOptions{})
	if err == nil || !strings.Contains(err.Error(), "Train") || !strings.Contains(err.Error(), "missing.txt") {
		t.Fatalf("error does not name the node and dependency: %v", err)
	}
}

func TestPackageServerStoppedMidUpload(t *testing.T) {
	srv := s3test.Start(t)
	st, err := storage.Open(context.Background(), storage.Config{Endpoint: srv.Endpoint, Bucket: "pkg",
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, MaxRetries: 2, PartSize: 5 << 20})
	if err != nil {
		t.Fatal(err)
	}
	root, p := workspace(t)
	// A big incompressible dependency so the upload is still running when the server dies.
	big := make([]byte, 40<<20)
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(root, "train/lib/weights.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var stoppedAt runs.Progress
	_, err = runs.Package(context.Background(), st, "team", root, p, runs.PackageOptions{
		Concurrency:      1,
		ProgressInterval: 1,
		Progress: func(pr runs.Progress) {
			if pr.NodeID == "n-train" && pr.Phase == runs.PhaseUploading && pr.Bytes > 0 {
				once.Do(func() { stoppedAt = pr; srv.Stop() })
			}
		},
	})
	if stoppedAt.NodeID == "" {
		t.Fatalf("server was never stopped (err %v)", err)
	}
	t.Logf("stopped at %d/%d bytes: %v", stoppedAt.Bytes, stoppedAt.TotalBytes, err)
	if err == nil {
		t.Fatal("Package succeeded although the server died mid-upload")
	}
	if !strings.Contains(err.Error(), "Train") || !errors.Is(err, storage.ErrUnreachable) {
		t.Fatalf("error does not name the node or the cause: %v", err)
	}
	// No complete-looking archive of the node is on the server.
	matches, _ := filepath.Glob(filepath.Join(srv.Dir, "pkg", "team", "archives", "train-*.tar.gz"))
	if len(matches) != 0 {
		t.Fatalf("partial archive visible: %v", matches)
	}
}
