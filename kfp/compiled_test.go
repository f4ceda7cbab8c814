package kfp_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kfbridge/kfbridge/kfp"
	"github.com/kfbridge/kfbridge/kfp/kfptest"
)

// TestCompiledPackagesUploadAndRun pushes the compilers' golden outputs (kfp/argo and kfp/ir
// testdata) through the fake's upload checks (KFP's Argo lint subset / IR checks), creates a run
// of each and waits for it: the client, the fake and the compilers agree on the package format.
func TestCompiledPackagesUploadAndRun(t *testing.T) {
	globs := map[string]string{kfp.V1Beta1: "argo/testdata/*.argo.yaml", kfp.V2Beta1: "ir/testdata/*.ir.yaml"}
	for _, v := range versions() {
		t.Run(v, func(t *testing.T) {
			files, _ := filepath.Glob(globs[v])
			if len(files) == 0 {
				t.Skipf("no compiled packages match %s", globs[v])
			}
			s := kfptest.NewServer(t, kfptest.Options{})
			c := newClient(t, s.URL, kfp.Options{APIVersion: v})
			ctx := context.Background()
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				name := filepath.Base(f)
				p, ver, err := c.UploadPipeline(ctx, kfp.UploadRequest{Name: name, Content: b})
				if err != nil {
					t.Errorf("%s: upload: %v", name, err)
					continue
				}
				run, err := c.CreateRun(ctx, kfp.RunRequest{Name: "run-" + name, PipelineID: p.ID, VersionID: ver.ID})
				if err != nil {
					t.Errorf("%s: create run: %v", name, err)
					continue
				}
				st := waitDone(t, c, run.ID)
				if st.State != kfp.PhaseSucceeded || len(st.Steps) == 0 || len(st.Steps) != len(s.Run(run.ID).Steps) {
					t.Errorf("%s: state %s with %d steps", name, st.State, len(st.Steps))
				}
			}
			t.Logf("%d compiled packages uploaded and run", len(files))
		})
	}
}
