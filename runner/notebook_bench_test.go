package runner_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/runner"
)

// BenchmarkNotebookOverhead compares a trivial 3-cell notebook run through the whole step runner
// (archive download and extraction, interpreter probe, driver, executed-notebook upload, log
// archive) with the same notebook run by the bare driver. The three variants are interleaved in
// every iteration so machine load affects them alike. Metrics: median seconds per run of each, and
// the ratios of the medians step/bare.
//
//	go test ./runner -run '^$' -bench NotebookOverhead -benchtime 10x
func BenchmarkNotebookOverhead(b *testing.B) {
	if err := exec.Command("/usr/bin/python3", "-c", "import nbclient, ipykernel").Run(); err != nil {
		b.Skip("python3-nbclient/python3-ipykernel not installed")
	}
	home := b.TempDir()
	b.Setenv("HOME", home)
	b.Setenv("IPYTHONDIR", filepath.Join(home, ".ipython"))
	b.Setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
	nbJSON := notebookJSON(b, "python3",
		nbCell{kind: "code", source: "x = 1"},
		nbCell{kind: "code", source: "print(x)"},
		nbCell{kind: "code", source: "x + 1"})
	f := newNotebookFixture(b, map[string]string{"trivial.ipynb": nbJSON})

	bareDir := b.TempDir()
	driver, err := os.ReadFile("driver.py")
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(bareDir, "driver.py"), driver, 0o600)
	os.WriteFile(filepath.Join(bareDir, "trivial.ipynb"), []byte(nbJSON), 0o644)

	bare := func() {
		cmd := exec.Command("/usr/bin/python3", "driver.py", "--notebook", "trivial.ipynb", "--output", "out.ipynb")
		cmd.Dir = bareDir
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("bare driver: %v\n%s", err, out)
		}
	}
	step := func(python string) {
		b.Setenv("KFBRIDGE_NOTEBOOK_PYTHON", python)
		wd := b.TempDir()
		b.Chdir(wd)
		if code := runner.Main(context.Background(), f.args("trivial.ipynb"), os.Getenv, nil, io.Discard, io.Discard); code != 0 {
			b.Fatalf("step exit code %d", code)
		}
	}
	var bareRuns, stepRuns, fixedRuns []float64
	timeIt := func(runs *[]float64, fn func()) {
		t := time.Now()
		fn()
		*runs = append(*runs, time.Since(t).Seconds())
	}
	b.ResetTimer()
	for range b.N {
		timeIt(&bareRuns, bare)
		timeIt(&stepRuns, func() { step("") })
		timeIt(&fixedRuns, func() { step("/usr/bin/python3") })
	}
	// Medians: other work on the machine makes single runs swing by seconds.
	mBare, mStep, mFixed := median(bareRuns), median(stepRuns), median(fixedRuns)
	b.ReportMetric(mBare, "bare-s/run")
	b.ReportMetric(mStep, "step-s/run")
	b.ReportMetric(mFixed, "step-fixed-python-s/run")
	b.ReportMetric(mStep/mBare, "step/bare")
	b.ReportMetric(mFixed/mBare, "step-fixed/bare")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
