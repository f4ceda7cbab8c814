package kfp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/kfp"
	"github.com/kfbridge/kfbridge/kfp/kfptest"
)

// TestContractFlows runs every client flow against the fake of each version, single- and
// multi-user. The fake validates each request (and its own answers) against the official
// swagger and fails the test on any mismatch.
func TestContractFlows(t *testing.T) {
	for _, v := range versions() {
		for _, multi := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/multiuser=%v", v, multi), func(t *testing.T) {
				s := kfptest.NewServer(t, kfptest.Options{MultiUser: multi})
				opts := kfp.Options{APIVersion: v}
				if multi {
					opts.Namespace = "alice"
				}
				c := newClient(t, s.URL, opts)
				ctx := context.Background()

				h, err := c.Healthz(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if h.MultiUser != multi || h.APIVersion != v {
					t.Fatalf("healthz = %+v", h)
				}

				p, pv, err := c.UploadPipeline(ctx, kfp.UploadRequest{Name: "hello", Description: "d", Content: pkg(v)})
				if err != nil {
					t.Fatalf("upload: %v", err)
				}
				if p.ID == "" || pv == nil || pv.ID == "" || p.Name != "hello" || p.DefaultVersionID != pv.ID {
					t.Fatalf("upload = %+v, %+v", p, pv)
				}
				found, err := c.FindPipeline(ctx, "hello", "")
				if err != nil || found.ID != p.ID {
					t.Fatalf("find pipeline = %+v, %v", found, err)
				}
				if _, err := c.FindPipeline(ctx, "nope", ""); !errors.Is(err, kfp.ErrNotFound) {
					t.Fatalf("find missing pipeline: %v", err)
				}
				v2v, err := c.UploadPipelineVersion(ctx, p.ID, kfp.UploadRequest{Name: "hello-0001", Content: pkg(v)})
				if err != nil {
					t.Fatalf("upload version: %v", err)
				}
				if v2v.PipelineID != p.ID || v2v.Name != "hello-0001" {
					t.Fatalf("version = %+v", v2v)
				}
				fv, err := c.FindPipelineVersion(ctx, p.ID, "hello-0001")
				if err != nil || fv.ID != v2v.ID {
					t.Fatalf("find version = %+v, %v", fv, err)
				}

				e, err := c.EnsureExperiment(ctx, "hello", "exp")
				if err != nil {
					t.Fatalf("ensure experiment: %v", err)
				}
				e2, err := c.EnsureExperiment(ctx, "hello", "exp")
				if err != nil || e2.ID != e.ID {
					t.Fatalf("second ensure = %+v, %v (want %s)", e2, err, e.ID)
				}
				if multi && e.Namespace != "alice" {
					t.Fatalf("experiment namespace = %q", e.Namespace)
				}

				// Run from the stored version.
				run, err := c.CreateRun(ctx, kfp.RunRequest{Name: "hello-run-1", ExperimentID: e.ID, PipelineID: p.ID, VersionID: v2v.ID,
					Parameters: map[string]any{"msg": "yo"}})
				if err != nil {
					t.Fatalf("create run: %v", err)
				}
				if run.ID == "" || run.ExperimentID != e.ID || run.Name != "hello-run-1" {
					t.Fatalf("run = %+v", run)
				}
				st := waitDone(t, c, run.ID)
				if st.State != kfp.PhaseSucceeded || len(st.Steps) != 2 {
					t.Fatalf("status = %+v", st)
				}
				for _, step := range st.Steps {
					if step.Phase != kfp.PhaseSucceeded || step.StartedAt.IsZero() || step.FinishedAt.IsZero() {
						t.Errorf("step %+v", step)
					}
				}
				if st.Steps[0].DisplayName != "step-a" || st.Steps[1].DisplayName != "step-b" {
					t.Errorf("step order: %s, %s", st.Steps[0].DisplayName, st.Steps[1].DisplayName)
				}
				if fr := s.Run(run.ID); fr == nil || fr.Parameters["msg"] != "yo" {
					t.Errorf("fake run parameters = %+v", fr)
				}

				// Inline run (v1 workflow_manifest / v2 pipeline_spec).
				rr := kfp.RunRequest{Name: "hello-run-2", ExperimentID: e.ID}
				inlineRun(t, v, &rr)
				run2, err := c.CreateRun(ctx, rr)
				if err != nil {
					t.Fatalf("create inline run: %v", err)
				}
				if st := waitDone(t, c, run2.ID); st.State != kfp.PhaseSucceeded {
					t.Fatalf("inline run state %s", st.State)
				}

				runs, next, err := c.ListRuns(ctx, kfp.ListRunsRequest{ExperimentID: e.ID, PageSize: 1, SortBy: "created_at desc"})
				if err != nil {
					t.Fatalf("list runs: %v", err)
				}
				if len(runs) != 1 || runs[0].ID != run2.ID || next == "" {
					t.Fatalf("list page 1 = %+v next=%q", runs, next)
				}
				runs, next, err = c.ListRuns(ctx, kfp.ListRunsRequest{ExperimentID: e.ID, PageSize: 1, PageToken: next, SortBy: "created_at desc"})
				if err != nil || len(runs) != 1 || runs[0].ID != run.ID || next != "" {
					t.Fatalf("list page 2 = %+v next=%q err=%v", runs, next, err)
				}
				byName, _, err := c.ListRuns(ctx, kfp.ListRunsRequest{Name: "hello-run-2"})
				if err != nil || len(byName) != 1 || byName[0].ID != run2.ID {
					t.Fatalf("list by name = %+v, %v", byName, err)
				}

				d, err := c.GetRun(ctx, run.ID)
				if err != nil {
					t.Fatal(err)
				}
				if v == kfp.V1Beta1 && (d.Workflow == nil || len(d.Workflow.Status.Nodes) != 3) {
					t.Fatalf("v1 workflow = %+v", d.Workflow)
				}
				if v == kfp.V2Beta1 && len(d.Tasks) != 5 {
					t.Fatalf("v2 tasks = %+v", d.Tasks)
				}
				noUserIDHeader(t, s)
				t.Logf("%d requests validated against the %s swagger", len(s.Requests()), v)
			})
		}
	}
}

func TestAutoVersion(t *testing.T) {
	for _, served := range versions() {
		t.Run(served, func(t *testing.T) {
			s := kfptest.NewServer(t, kfptest.Options{Versions: []string{served}})
			c := newClient(t, s.URL, kfp.Options{APIVersion: kfp.Auto})
			got, err := c.APIVersion(context.Background())
			if err != nil || got != served {
				t.Fatalf("APIVersion = %q, %v; want %s", got, err, served)
			}
		})
	}
	// A 2.x server serves both: auto prefers v2beta1.
	s := kfptest.NewServer(t, kfptest.Options{})
	c := newClient(t, s.URL, kfp.Options{})
	if got, err := c.APIVersion(context.Background()); err != nil || got != kfp.V2Beta1 {
		t.Fatalf("APIVersion on a 2.x server = %q, %v", got, err)
	}
}

func TestStepStatusesFailureAndCompressedNodes(t *testing.T) {
	for _, v := range versions() {
		t.Run(v, func(t *testing.T) {
			exec := kfptest.ScriptExecutor{Steps: map[string]kfptest.StepScript{"step-a": {ExitCode: 3, Message: "boom"}}}
			s := kfptest.NewServer(t, kfptest.Options{Executor: exec, CompressNodes: true})
			c := newClient(t, s.URL, kfp.Options{APIVersion: v})
			rr := kfp.RunRequest{Name: "fail-run"}
			inlineRun(t, v, &rr)
			run, err := c.CreateRun(context.Background(), rr)
			if err != nil {
				t.Fatal(err)
			}
			st := waitDone(t, c, run.ID)
			if st.State != kfp.PhaseFailed {
				t.Fatalf("state %s", st.State)
			}
			a, b := st.Step("step-a"), st.Step("step-b")
			if a == nil || b == nil {
				t.Fatalf("steps = %+v", st.Steps)
			}
			if a.Phase != kfp.PhaseFailed || b.Phase != kfp.PhaseSkipped {
				t.Fatalf("a=%s b=%s", a.Phase, b.Phase)
			}
			if v == kfp.V1Beta1 {
				// Exit code comes from the Argo node outputs, decoded from compressedNodes.
				if a.ExitCode == nil || *a.ExitCode != 3 || a.Message != "boom" {
					t.Fatalf("step-a = %+v", a)
				}
				d, _ := c.GetRun(context.Background(), run.ID)
				if d.Workflow.Status.CompressedNodes == "" {
					t.Fatal("fake did not compress nodes")
				}
			} else if a.Message != "boom" || a.ExitCode == nil || *a.ExitCode != 3 {
				// v2 task details carry no exit code: the client reads it from the v1 manifest.
				t.Fatalf("v2 step-a = %+v", a)
			}
		})
	}
}

func TestTerminate(t *testing.T) {
	for _, v := range versions() {
		t.Run(v, func(t *testing.T) {
			exec := kfptest.ScriptExecutor{Steps: map[string]kfptest.StepScript{"step-a": {Block: true}}}
			s := kfptest.NewServer(t, kfptest.Options{Executor: exec})
			c := newClient(t, s.URL, kfp.Options{APIVersion: v})
			ctx := context.Background()
			rr := kfp.RunRequest{Name: "long"}
			inlineRun(t, v, &rr)
			run, err := c.CreateRun(ctx, rr)
			if err != nil {
				t.Fatal(err)
			}
			// Wait until step-a runs.
			deadline := time.Now().Add(5 * time.Second)
			for {
				st, err := c.GetRunStatus(ctx, run.ID)
				if err != nil {
					t.Fatal(err)
				}
				if a := st.Step("step-a"); a != nil && a.Phase == kfp.PhaseRunning {
					if st.State != kfp.PhaseRunning {
						t.Fatalf("run state %s while step runs", st.State)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("step-a never ran")
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := c.TerminateRun(ctx, run.ID); err != nil {
				t.Fatal(err)
			}
			st := waitDone(t, c, run.ID)
			if st.State != kfp.PhaseCancelled {
				t.Fatalf("terminated run state %s (%s)", st.State, st.RawState)
			}
			if a := st.Step("step-a"); a == nil || a.Phase != kfp.PhaseCancelled {
				t.Fatalf("step-a after terminate = %+v", a)
			}
			if err := c.TerminateRun(ctx, "no-such-run"); !errors.Is(err, kfp.ErrNotFound) {
				t.Fatalf("terminate unknown run: %v", err)
			}
		})
	}
}

func TestDuplicatePipelineIsConflict(t *testing.T) {
	want := map[string]int{kfp.V1Beta1: http.StatusInternalServerError, kfp.V2Beta1: http.StatusConflict}
	for _, v := range versions() {
		t.Run(v, func(t *testing.T) {
			s := kfptest.NewServer(t, kfptest.Options{})
			c := newClient(t, s.URL, kfp.Options{APIVersion: v})
			ctx := context.Background()
			if _, _, err := c.UploadPipeline(ctx, kfp.UploadRequest{Name: "dup", Content: pkg(v)}); err != nil {
				t.Fatal(err)
			}
			_, _, err := c.UploadPipeline(ctx, kfp.UploadRequest{Name: "dup", Content: pkg(v)})
			var ae *kfp.APIError
			if !errors.Is(err, kfp.ErrConflict) || !errors.As(err, &ae) || ae.StatusCode != want[v] {
				t.Fatalf("duplicate upload: %v", err)
			}
			if ae.Attempts != 1 {
				t.Fatalf("a conflict must not be retried, attempts=%d", ae.Attempts)
			}
			if !strings.Contains(err.Error(), "upload pipeline") || !strings.Contains(err.Error(), "/pipelines/upload") {
				t.Fatalf("message does not name op and endpoint: %v", err)
			}
			if s.PipelineCount() != 1 {
				t.Fatalf("pipelines = %d", s.PipelineCount())
			}
		})
	}
}

func TestMultiUserNeedsNamespace(t *testing.T) {
	for _, v := range versions() {
		s := kfptest.NewServer(t, kfptest.Options{MultiUser: true})
		c := newClient(t, s.URL, kfp.Options{APIVersion: v})
		_, err := c.EnsureExperiment(context.Background(), "x", "")
		if !errors.Is(err, kfp.ErrInvalid) || !strings.Contains(err.Error(), "user_namespace") {
			t.Fatalf("%s: %v", v, err)
		}
	}
}

func TestPublishPipeline(t *testing.T) {
	for _, v := range versions() {
		t.Run(v, func(t *testing.T) {
			s := kfptest.NewServer(t, kfptest.Options{})
			c := newClient(t, s.URL, kfp.Options{APIVersion: v})
			ctx := context.Background()
			p1, v1, err := c.PublishPipeline(ctx, kfp.PublishRequest{Name: "pub", VersionName: "pub-1", Content: pkg(v)})
			if err != nil {
				t.Fatal(err)
			}
			if v1.Name != "pub" || p1.DefaultVersionID != v1.ID {
				t.Fatalf("first publish: %+v %+v", p1, v1)
			}
			p2, v2, err := c.PublishPipeline(ctx, kfp.PublishRequest{Name: "pub", VersionName: "pub-2", Content: pkg(v)})
			if err != nil {
				t.Fatal(err)
			}
			if p2.ID != p1.ID || v2.Name != "pub-2" || v2.ID == v1.ID || p2.DefaultVersionID != v2.ID {
				t.Fatalf("second publish: %+v %+v", p2, v2)
			}
			if s.PipelineCount() != 1 || s.VersionCount() != 2 {
				t.Fatalf("pipelines=%d versions=%d", s.PipelineCount(), s.VersionCount())
			}
			// A run of the new version runs the new version.
			run, err := c.CreateRun(ctx, kfp.RunRequest{Name: "pub-run", PipelineID: p2.ID, VersionID: v2.ID})
			if err != nil {
				t.Fatal(err)
			}
			if fr := s.Run(run.ID); fr.VersionID != v2.ID {
				t.Fatalf("run version %s, want %s", fr.VersionID, v2.ID)
			}
		})
	}
}
