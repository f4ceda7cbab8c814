package runs_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/runs"
	"github.com/kfbridge/kfbridge/storage"
	"github.com/kfbridge/kfbridge/storage/s3test"
)

// Issue 4 benchmark: 10 nodes × 20 MB of mixed compressible files.
//
// Each iteration measures, in the same process and on the same (page-cached) files:
//   - tar:      GNU `tar czf` of every node's directory, one after the other (a lower bound of
//     Elyra's per-node archive step, which additionally uploads each archive);
//   - cold:     runs.Package into a fresh prefix of a versitygw bucket (archive + upload of all);
//   - resubmit: runs.Package again with nothing changed.
//
// It reports cold/tar and resubmit/tar (goals ≤ 0.5 and ≤ 0.1) plus the absolute seconds.
// Run: bench/packaging.sh (or go test -run '^$' -bench BenchmarkPackaging -benchtime 3x ./runs/).

const (
	benchNodes        = 10
	benchFilesPerNode = 8
	benchFileSize     = 20 << 20 / benchFilesPerNode
)

// benchData fills n bytes with a mix resembling a data-science workspace: CSV-like numeric text,
// source-like text and incompressible binary runs (about a quarter of the bytes).
func benchData(r *rand.Rand, n int) []byte {
	b := make([]byte, 0, n)
	words := []string{"import ", "numpy ", "as np\n", "def ", "return ", "model", "(x)", " = ", "\n    "}
	for len(b) < n {
		switch r.IntN(4) {
		case 0: // binary blob (weights, images)
			k := 4096 + r.IntN(65536)
			for range k {
				b = append(b, byte(r.Uint32()))
			}
		case 1, 2: // CSV rows
			for range 200 + r.IntN(800) {
				b = fmt.Appendf(b, "%d,%.4f,%d,%s\n", r.IntN(100000), r.Float64()*1000, r.IntN(7), words[r.IntN(len(words))])
			}
		default: // source-like text
			for range 500 + r.IntN(2000) {
				b = append(b, words[r.IntN(len(words))]...)
			}
		}
	}
	return b[:n]
}

func benchWorkspace(b *testing.B) (string, *pipeline.Pipeline, []string) {
	b.Helper()
	root := b.TempDir()
	r := rand.New(rand.NewPCG(4, 2))
	p := &pipeline.Pipeline{Name: "bench"}
	var dirs []string
	for i := range benchNodes {
		dir := fmt.Sprintf("node%02d", i)
		abs := filepath.Join(root, dir)
		if err := os.MkdirAll(filepath.Join(abs, "data"), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(abs, "step.py"), []byte("print('step')\n"), 0o644); err != nil {
			b.Fatal(err)
		}
		for j := range benchFilesPerNode {
			if err := os.WriteFile(filepath.Join(abs, "data", fmt.Sprintf("part%d.dat", j)), benchData(r, benchFileSize), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		p.Nodes = append(p.Nodes, &pipeline.Node{ID: fmt.Sprintf("n%02d", i), Label: dir, Kind: pipeline.KindPython,
			Op: pipeline.OpPython, Filename: dir + "/step.py", Dependencies: []string{"data"}, IncludeSubdirectories: true})
		dirs = append(dirs, abs)
	}
	return root, p, dirs
}

func BenchmarkPackaging(b *testing.B) {
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		b.Skip("GNU tar not installed")
	}
	srv := s3test.Start(b)
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Config{Endpoint: srv.Endpoint, Bucket: "bench", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		b.Fatal(err)
	}
	root, p, dirs := benchWorkspace(b)
	out := b.TempDir()

	var tarT, coldT, resubT time.Duration
	var tarBytes, archBytes int64
	iter := 0
	for b.Loop() {
		t0 := time.Now()
		for i, d := range dirs {
			dst := filepath.Join(out, fmt.Sprintf("n%d.tar.gz", i))
			if o, err := exec.Command(tarBin, "czf", dst, "-C", d, ".").CombinedOutput(); err != nil {
				b.Fatalf("tar: %v\n%s", err, o)
			}
		}
		tarT += time.Since(t0)
		for i := range dirs {
			if st, err := os.Stat(filepath.Join(out, fmt.Sprintf("n%d.tar.gz", i))); err == nil {
				tarBytes += st.Size()
			}
		}

		prefix := fmt.Sprintf("iter%d", iter)
		iter++
		t1 := time.Now()
		got, err := runs.Package(ctx, st, prefix, root, p, runs.PackageOptions{})
		coldT += time.Since(t1)
		if err != nil {
			b.Fatal(err)
		}
		for _, a := range got {
			if !a.Uploaded {
				b.Fatalf("cold run deduplicated %s", a.NodeID)
			}
			archBytes += a.Size
		}

		t2 := time.Now()
		again, err := runs.Package(ctx, st, prefix, root, p, runs.PackageOptions{})
		resubT += time.Since(t2)
		if err != nil {
			b.Fatal(err)
		}
		for _, a := range again {
			if a.Uploaded {
				b.Fatalf("resubmit uploaded %s again", a.NodeID)
			}
		}
	}
	n := float64(iter)
	b.ReportMetric(tarT.Seconds()/n, "tar-s")
	b.ReportMetric(coldT.Seconds()/n, "cold-s")
	b.ReportMetric(resubT.Seconds()/n, "resubmit-s")
	b.ReportMetric(float64(coldT)/float64(tarT), "cold/tar")
	b.ReportMetric(float64(resubT)/float64(tarT), "resubmit/tar")
	b.ReportMetric(float64(tarBytes)/n/(1<<20), "tar-MB")
	b.ReportMetric(float64(archBytes)/n/(1<<20), "archive-MB")
}
