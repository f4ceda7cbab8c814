package runner_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/runner"
)

// BenchmarkNotebookOverhead compares a trivial 3-cell notebook run through the whole step runner
// (archive download and extraction, interpreter probe, driver, executed-notebook upload, log
// archive) with the same notebook run by the bare driver. The three variants are interleaved in
// every iteration so machine load affects them alike. Metrics: seconds per run of each, and the
// ratios step/bare.
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
	var tBare, tStep, tStepFixed time.Duration
	timeIt := func(d *time.Duration, fn func()) {
		t := time.Now()
		fn()
		*d += time.Since(t)
	}
	b.ResetTimer()
	for range b.N {
		timeIt(&tBare, bare)
		timeIt(&tStep, func() { step("") })
		timeIt(&tStepFixed, func() { step("/usr/bin/python3") })
	}
	n := float64(b.N)
	b.ReportMetric(tBare.Seconds()/n, "bare-s/run")
	b.ReportMetric(tStep.Seconds()/n, "step-s/run")
	b.ReportMetric(tStepFixed.Seconds()/n, "step-fixed-python-s/run")
	b.ReportMetric(tStep.Seconds()/tBare.Seconds(), "step/bare")
	b.ReportMetric(tStepFixed.Seconds()/tBare.Seconds(), "step-fixed/bare")
}
