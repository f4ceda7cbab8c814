package kfp_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/kfp"
	"github.com/kfbridge/kfbridge/kfp/kfptest"
)

func TestRetryTransient5xxThenSuccess(t *testing.T) {
	for _, status := range []int{502, 503, 504} {
		s := kfptest.NewServer(t, kfptest.Options{})
		s.InjectFault(kfptest.Fault{Method: "GET", Path: "/apis/v2beta1/healthz", Status: status, Times: 2})
		c := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V2Beta1})
		if _, err := c.Healthz(context.Background()); err != nil {
			t.Fatalf("%d twice then OK: %v", status, err)
		}
		if n := s.CountRequests("GET", "/apis/v2beta1/healthz"); n != 3 {
			t.Fatalf("%d: requests = %d, want 3", status, n)
		}
	}
}

func TestRetryBoundedOnPersistent503(t *testing.T) {
	s := kfptest.NewServer(t, kfptest.Options{})
	s.InjectFault(kfptest.Fault{Method: "GET", Path: "/apis/v1beta1/healthz", Status: 503, Times: 100})
	c := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V1Beta1})
	_, err := c.Healthz(context.Background())
	var ae *kfp.APIError
	if !errors.Is(err, kfp.ErrUpstream) || !errors.As(err, &ae) || ae.StatusCode != 503 || ae.Attempts != fastRetry.MaxAttempts {
		t.Fatalf("persistent 503: %v", err)
	}
	if n := s.CountRequests("GET", "/apis/v1beta1/healthz"); n != fastRetry.MaxAttempts {
		t.Fatalf("requests = %d, want %d", n, fastRetry.MaxAttempts)
	}
	if !strings.Contains(err.Error(), "healthz") || !strings.Contains(err.Error(), "/apis/v1beta1/healthz") || !strings.Contains(err.Error(), "4 attempts") {
		t.Fatalf("message: %v", err)
	}
}

func TestNoRetryOnClientError(t *testing.T) {
	s := kfptest.NewServer(t, kfptest.Options{MultiUser: true})
	c := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V1Beta1, Namespace: "alice"})
	// A run without experiment in multi-user mode: the client refuses before sending.
	_, err := c.CreateRun(context.Background(), kfp.RunRequest{Name: "r", PipelineID: "p"})
	if !errors.Is(err, kfp.ErrInvalid) {
		t.Fatalf("run without experiment: %v", err)
	}
	// A 404 is returned at once.
	_, err = c.GetRun(context.Background(), "missing")
	var ae *kfp.APIError
	if !errors.Is(err, kfp.ErrNotFound) || !errors.As(err, &ae) || ae.Attempts != 1 {
		t.Fatalf("missing run: %v", err)
	}
	if n := s.CountRequests("GET", "/apis/v1beta1/runs/missing"); n != 1 {
		t.Fatalf("requests = %d", n)
	}
}

func TestKFPDown(t *testing.T) {
	// A port with nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := newClient(t, "http://"+addr, kfp.Options{APIVersion: kfp.V1Beta1})
	start := time.Now()
	_, err = c.Healthz(context.Background())
	elapsed := time.Since(start)
	var ae *kfp.APIError
	if !errors.Is(err, kfp.ErrUpstream) || !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &ae) {
		t.Fatalf("KFP down: %v", err)
	}
	if ae.Attempts != fastRetry.MaxAttempts || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("KFP down: attempts=%d err=%v", ae.Attempts, err)
	}
	if elapsed > 2*time.Second {
		t.Fatalf("took %v", elapsed)
	}
	t.Logf("KFP down: %d attempts in %v: %v", ae.Attempts, elapsed.Round(time.Millisecond), err)

	// A create to a dead server is retried blindly: the request never left the machine.
	rr := kfp.RunRequest{Name: "r"}
	inlineRun(t, kfp.V1Beta1, &rr)
	_, err = c.CreateRun(context.Background(), rr)
	if !errors.As(err, &ae) || ae.Attempts != fastRetry.MaxAttempts || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("create run with KFP down: %v", err)
	}
}

func TestDexLoginUnreachableIsRetried(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := newClient(t, "http://"+addr+"/pipeline", kfp.Options{APIVersion: kfp.V1Beta1,
		Auth: kfp.Auth{Type: kfp.AuthDexStaticPasswords, Username: "u", Password: "p"}})
	_, err = c.Healthz(context.Background())
	var ae *kfp.APIError
	if !errors.Is(err, kfp.ErrUpstream) || !errors.As(err, &ae) || ae.Attempts != fastRetry.MaxAttempts || ae.Op != "dex login" {
		t.Fatalf("dex login with KFP down: %v", err)
	}
}

func TestTimeoutIsBoundedAndClear(t *testing.T) {
	s := kfptest.NewServer(t, kfptest.Options{})
	s.InjectFault(kfptest.Fault{Method: "GET", Path: "/apis/v2beta1/healthz", Delay: 2 * time.Second, Times: 100})
	c := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V2Beta1, RequestTimeout: 50 * time.Millisecond,
		Retry: kfp.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}})
	start := time.Now()
	_, err := c.Healthz(context.Background())
	elapsed := time.Since(start)
	var ae *kfp.APIError
	if !errors.Is(err, kfp.ErrUpstream) || !errors.As(err, &ae) || ae.Attempts != 3 || !strings.Contains(err.Error(), "did not answer in time") {
		t.Fatalf("timeouts: %v", err)
	}
	if elapsed > time.Second {
		t.Fatalf("3 attempts of 50ms took %v", elapsed)
	}
	t.Logf("timeouts: %d attempts in %v", ae.Attempts, elapsed.Round(time.Millisecond))

	// The caller's context wins over the retry budget.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	c2 := newClient(t, s.URL, kfp.Options{APIVersion: kfp.V2Beta1, RequestTimeout: time.Second})
	_, err = c2.Healthz(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ctx deadline: %v", err)
	}
}

// TestCreateRunNoDuplicates: the create request reaches KFP and the run is created, but the
// answer is lost (dropped connection, gateway timeout, client timeout). The client must find the
// run it created instead of creating a second one.
func TestCreateRunNoDuplicates(t *testing.T) {
	faults := map[string]kfptest.Fault{
		"drop-after-create":  {Drop: true, AfterHandle: true},
		"504-after-create":   {Status: http.StatusGatewayTimeout, AfterHandle: true},
		"502-twice-after":    {Status: http.StatusBadGateway, AfterHandle: true, Times: 2},
		"503-before-create":  {Status: http.StatusServiceUnavailable},
		"drop-before-create": {Drop: true},
	}
	for _, v := range versions() {
		for name, f := range faults {
			t.Run(v+"/"+name, func(t *testing.T) {
				s := kfptest.NewServer(t, kfptest.Options{MultiUser: true})
				c := newClient(t, s.URL, kfp.Options{APIVersion: v, Namespace: "alice"})
				ctx := context.Background()
				e, err := c.EnsureExperiment(ctx, "exp", "")
				if err != nil {
					t.Fatal(err)
				}
				f.Method, f.Path = "POST", "/apis/"+v+"/runs"
				s.InjectFault(f)
				rr := kfp.RunRequest{Name: "run-" + name, ExperimentID: e.ID}
				inlineRun(t, v, &rr)
				run, err := c.CreateRun(ctx, rr)
				if err != nil {
					t.Fatalf("create run: %v", err)
				}
				runs := s.Runs()
				if len(runs) != 1 {
					t.Fatalf("fake holds %d runs, want 1", len(runs))
				}
				if run.ID != runs[0].ID {
					t.Fatalf("client returned %s, fake created %s", run.ID, runs[0].ID)
				}
				t.Logf("create requests: %d", s.CountRequests("POST", "/apis/"+v+"/runs"))
			})
		}
	}
}

func TestCreateRunClientTimeoutNoDuplicate(t *testing.T) {
	for _, v := range versions() {
		s := kfptest.NewServer(t, kfptest.Options{})
		// The server creates the run but answers only after the client's per-attempt timeout.
		s.InjectFault(kfptest.Fault{Method: "POST", Path: "/apis/" + v + "/runs", Delay: 300 * time.Millisecond, AfterHandle: true})
		c := newClient(t, s.URL, kfp.Options{APIVersion: v, RequestTimeout: 100 * time.Millisecond})
		rr := kfp.RunRequest{Name: "slow-create"}
		inlineRun(t, v, &rr)
		run, err := c.CreateRun(context.Background(), rr)
		if err != nil {
			t.Fatalf("%s create run: %v", v, err)
		}
		runs := s.Runs()
		if len(runs) != 1 || runs[0].ID != run.ID {
			t.Fatalf("%s: fake has %d runs; client got %s", v, len(runs), run.ID)
		}
		if n := s.CountRequests("POST", "/apis/"+v+"/runs"); n != 1 {
			t.Fatalf("%s: create sent %d times", v, n)
		}
	}
}

func TestUploadAmbiguousFailureNoDuplicate(t *testing.T) {
	for _, v := range versions() {
		s := kfptest.NewServer(t, kfptest.Options{})
		s.InjectFault(kfptest.Fault{Method: "POST", Path: "/apis/" + v + "/pipelines/upload", Drop: true, AfterHandle: true})
		s.InjectFault(kfptest.Fault{Method: "POST", Path: "/apis/" + v + "/experiments", Status: 504, AfterHandle: true})
		c := newClient(t, s.URL, kfp.Options{APIVersion: v})
		ctx := context.Background()
		p, ver, err := c.UploadPipeline(ctx, kfp.UploadRequest{Name: "amb", Content: pkg(v)})
		if err != nil || p.ID == "" || ver == nil {
			t.Fatalf("%s upload: %+v %+v %v", v, p, ver, err)
		}
		if s.PipelineCount() != 1 || s.CountRequests("POST", "/apis/"+v+"/pipelines/upload") != 1 {
			t.Fatalf("%s: pipelines=%d uploads=%d", v, s.PipelineCount(), s.CountRequests("POST", "/apis/"+v+"/pipelines/upload"))
		}
		e, err := c.CreateExperiment(ctx, "amb", "")
		if err != nil || e.ID == "" {
			t.Fatalf("%s create experiment: %v", v, err)
		}
	}
}

// TestCreateRunLateServerNoDuplicate: the client times out while KFP is still creating the run.
// The look-up waits LookupDelay, so it sees the run the slow server created and does not send
// the create again.
func TestCreateRunLateServerNoDuplicate(t *testing.T) {
	for _, v := range versions() {
		s := kfptest.NewServer(t, kfptest.Options{})
		s.InjectFault(kfptest.Fault{Method: "POST", Path: "/apis/" + v + "/runs", Delay: 150 * time.Millisecond, Detached: true})
		retry := fastRetry
		retry.LookupDelay = 400 * time.Millisecond
		c := newClient(t, s.URL, kfp.Options{APIVersion: v, RequestTimeout: 50 * time.Millisecond, Retry: retry})
		rr := kfp.RunRequest{Name: "late-create"}
		inlineRun(t, v, &rr)
		start := time.Now()
		run, err := c.CreateRun(context.Background(), rr)
		if err != nil {
			t.Fatalf("%s create run: %v", v, err)
		}
		// Let the slow first request finish on the server before counting.
		time.Sleep(time.Until(start.Add(300 * time.Millisecond)))
		runs := s.Runs()
		if len(runs) != 1 || runs[0].ID != run.ID {
			t.Fatalf("%s: fake has %d runs; client got %s", v, len(runs), run.ID)
		}
	}
}

func TestFindRunAndVerify(t *testing.T) {
	for _, v := range versions() {
		s := kfptest.NewServer(t, kfptest.Options{MultiUser: true})
		c := newClient(t, s.URL, kfp.Options{APIVersion: v, Namespace: "alice"})
		ctx := context.Background()
		h, err := c.Verify(ctx)
		if err != nil || !h.MultiUser {
			t.Fatalf("%s verify: %+v %v", v, h, err)
		}
		e, err := c.EnsureExperiment(ctx, "exp", "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.FindRun(ctx, "r1", e.ID); !errors.Is(err, kfp.ErrNotFound) {
			t.Fatalf("%s find missing run: %v", v, err)
		}
		rr := kfp.RunRequest{Name: "r1", ExperimentID: e.ID}
		inlineRun(t, v, &rr)
		run, err := c.CreateRun(ctx, rr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.FindRun(ctx, "r1", "")
		if err != nil || got.ID != run.ID {
			t.Fatalf("%s find run in namespace: %+v %v", v, got, err)
		}
		// Verify without a namespace on a multi-user server names the missing setting.
		c2 := newClient(t, s.URL, kfp.Options{APIVersion: v})
		if _, err := c2.Verify(ctx); !errors.Is(err, kfp.ErrInvalid) || !strings.Contains(err.Error(), "user_namespace") {
			t.Fatalf("%s verify without namespace: %v", v, err)
		}
	}
}

// TestCreateRunLookupFailures: the create's answer is lost and the look-ups fail too. The client
// never sends the create again while the outcome is unknown; it finds the run with a last look-up
// once KFP answers again, or reports an ambiguous error.
func TestCreateRunLookupFailures(t *testing.T) {
	for _, v := range versions() {
		for _, listFaults := range []int{3, 100} {
			s := kfptest.NewServer(t, kfptest.Options{})
			s.InjectFault(kfptest.Fault{Method: "POST", Path: "/apis/" + v + "/runs", Status: 504, AfterHandle: true})
			s.InjectFault(kfptest.Fault{Method: "GET", Path: "/apis/" + v + "/runs", Status: 503, Times: listFaults})
			c := newClient(t, s.URL, kfp.Options{APIVersion: v})
			rr := kfp.RunRequest{Name: "lost"}
			inlineRun(t, v, &rr)
			run, err := c.CreateRun(context.Background(), rr)
			if n := s.CountRequests("POST", "/apis/"+v+"/runs"); n != 1 {
				t.Fatalf("%s/%d: create sent %d times", v, listFaults, n)
			}
			if len(s.Runs()) != 1 {
				t.Fatalf("%s/%d: %d runs", v, listFaults, len(s.Runs()))
			}
			var ae *kfp.APIError
			switch listFaults {
			case 3:
				if err != nil || run.ID != s.Runs()[0].ID {
					t.Fatalf("%s: last look-up should find the run: %v", v, err)
				}
			default:
				if !errors.As(err, &ae) || !ae.Ambiguous || !strings.Contains(err.Error(), "may have taken effect") {
					t.Fatalf("%s: want an ambiguous error, got %v", v, err)
				}
			}
		}
	}
}
