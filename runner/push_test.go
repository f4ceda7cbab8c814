package runner

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/kfbridge/kfbridge/handlers"
	"github.com/kfbridge/kfbridge/logstream"
)

type anyPushToken struct{}

func (anyPushToken) CheckPushToken(runID, stepID, token string) bool { return token == "push-secret" }

// pushService is the real push and end handlers over a store that can be replaced (a restart:
// the new store holds nothing), behind a layer that delays, refuses and cuts requests at random.
type pushService struct {
	t        *testing.T
	mu       sync.Mutex
	rnd      *rand.Rand
	store    *logstream.Store
	router   http.Handler
	chaos    bool
	inflight atomic.Int64
	maxIn    atomic.Int64
	requests atomic.Int64
	cut      atomic.Int64
	refused  atomic.Int64
}

func newPushService(t *testing.T, chaos bool) *pushService {
	ps := &pushService{t: t, rnd: rand.New(rand.NewPCG(3, 4)), chaos: chaos}
	ps.restart()
	return ps
}

// restart replaces the store with an empty one, as a service restarted mid-step would be.
func (ps *pushService) restart() {
	store := logstream.New(logstream.Options{SpoolDir: ps.t.TempDir()})
	ps.t.Cleanup(store.Close)
	r := chi.NewRouter()
	r.Post("/api/v1/runs/{id}/steps/{step}/lines", handlers.PushLines(nil, anyPushToken{}, store).ServeHTTP)
	r.Post("/api/v1/runs/{id}/steps/{step}/end", handlers.PushEnd(nil, anyPushToken{}, store).ServeHTTP)
	ps.mu.Lock()
	ps.store, ps.router = store, r
	ps.mu.Unlock()
}

func (ps *pushService) current() (*logstream.Store, http.Handler) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.store, ps.router
}

func (ps *pushService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := ps.inflight.Add(1)
	defer ps.inflight.Add(-1)
	for m := ps.maxIn.Load(); n > m && !ps.maxIn.CompareAndSwap(m, n); m = ps.maxIn.Load() {
	}
	ps.requests.Add(1)
	_, h := ps.current()
	if !ps.chaos {
		h.ServeHTTP(w, r)
		return
	}
	ps.mu.Lock()
	dice := ps.rnd.IntN(100)
	delay := time.Duration(ps.rnd.IntN(20)) * time.Millisecond
	ps.mu.Unlock()
	switch {
	case dice < 15:
		time.Sleep(delay) // this request overtakes others or is overtaken
		h.ServeHTTP(w, r)
	case dice < 18:
		ps.refused.Add(1)
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	case dice < 21:
		// Stored, but the answer is lost with the connection.
		h.ServeHTTP(httptest.NewRecorder(), r)
		ps.cut.Add(1)
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
			}
		}
	default:
		h.ServeHTTP(w, r)
	}
}

// produce writes n numbered lines through the sink, in bursts with pauses, and returns the
// step's end record.
func produce(s *sink, n int) logstream.End {
	pad := strings.Repeat("z", 120)
	for i := 1; i <= n; i++ {
		s.write(logstream.Stdout, fmt.Appendf(nil, "line %d %s", i, pad[:i%120]), false)
		if i%5000 == 0 {
			s.flush()
			if i%40000 == 0 {
				time.Sleep(30 * time.Millisecond) // a quiet moment: small batches, one at a time
			}
		}
	}
	s.flush()
	return s.end(0)
}

func newTestPusher(t *testing.T, url string) (*pusher, *sink, *os.File) {
	dir := t.TempDir()
	nd, err := os.Create(filepath.Join(dir, "log.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nd.Close() })
	s := newSink(io.Discard, nil, io.Discard, nd, time.Now, 0)
	return newPusher(url, "run1", "step1", "push-secret", s, nd), s, nd
}

// runPusher serves h on a test server and runs a pusher of a fresh sink against it until the
// test ends (its context is cancelled first, then the server closes).
func runPusher(t *testing.T, h http.Handler) (context.Context, *pusher, *sink, *os.File) {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	p, s, nd := newTestPusher(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go p.run(ctx)
	return ctx, p, s, nd
}

// checkHeld compares what the store holds with the runner's log.ndjson, byte for byte.
func checkHeld(t *testing.T, store *logstream.Store, nd *os.File, n int) {
	t.Helper()
	want, err := os.ReadFile(nd.Name())
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for after := int64(0); ; {
		c, err := store.Read(context.Background(), "run1", "step1", after, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if c.Gap != nil {
			t.Fatalf("gap %+v", c.Gap)
		}
		if len(c.Records) == 0 {
			break
		}
		for _, r := range c.Records {
			got = append(append(got, r.JSON...), '\n')
		}
		after = c.Next(after)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("the service holds %d bytes (%d lines), the runner wrote %d bytes (%d lines)",
			len(got), bytes.Count(got, []byte{'\n'}), len(want), n)
	}
	if e := store.StepEnd("run1", "step1"); e == nil || e.FinalSeq != int64(n) {
		t.Fatalf("end record %+v", e)
	}
}

// TestPusherPipelinesAFlood checks that a flood of output is pushed with several requests in
// flight (the throughput fix), that it all arrives in order, and that a quiet step still sends a
// line at once.
func TestPusherPipelinesAFlood(t *testing.T) {
	ps := newPushService(t, false)
	_, p, s, nd := runPusher(t, ps)
	// One line on its own leaves at once, in a request of its own.
	s.emit(logstream.Stdout, []byte("hello"), false)
	store, _ := ps.current()
	deadline := time.Now().Add(5 * time.Second)
	for store.LastSeq("run1", "step1") < 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if store.LastSeq("run1", "step1") != 1 {
		t.Fatal("a lone line was not pushed")
	}
	const n = 200_000
	end := produce(s, n-1)
	end.FinalSeq, end.Lines = n, n
	if unsent, err := p.finish(end, 30*time.Second); unsent != 0 || err != nil {
		t.Fatalf("finish: %d unsent, %v", unsent, err)
	}
	checkHeld(t, store, nd, n)
	t.Logf("%d requests, at most %d in flight", ps.requests.Load(), ps.maxIn.Load())
	if ps.maxIn.Load() < 2 {
		t.Fatalf("never more than %d push in flight during a flood", ps.maxIn.Load())
	}
	if ps.maxIn.Load() > pushWindow+1 { // + the end record
		t.Fatalf("%d requests in flight, window %d", ps.maxIn.Load(), pushWindow)
	}
}

// TestPusherSurvivesReorderingRefusalsCutsAndRestart pushes 300,000 lines through a service that
// delays requests (so pipelined batches arrive out of order), refuses some, loses the answers of
// others after storing them, and restarts empty halfway: the service ends up with exactly the
// runner's log and its end record.
func TestPusherSurvivesReorderingRefusalsCutsAndRestart(t *testing.T) {
	ps := newPushService(t, true)
	ctx, p, s, nd := runPusher(t, ps)
	const n = 300_000
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		for {
			store, _ := ps.current()
			if store.LastSeq("run1", "step1") >= n/2 {
				ps.restart()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	end := produce(s, n)
	<-restarted
	if unsent, err := p.finish(end, 60*time.Second); unsent != 0 || err != nil {
		t.Fatalf("finish: %d unsent, %v", unsent, err)
	}
	store, _ := ps.current()
	checkHeld(t, store, nd, n)
	t.Logf("%d requests (%d refused, %d answers lost), at most %d in flight", ps.requests.Load(), ps.refused.Load(), ps.cut.Load(), ps.maxIn.Load())
	if ps.refused.Load() == 0 || ps.cut.Load() == 0 {
		t.Fatal("the chaos layer injected no faults")
	}
}

// TestPusherFallsBackToContentLength puts a proxy that refuses chunked request bodies (411, as
// some do) in front of the service: the pusher switches to Content-Length and every line arrives.
func TestPusherFallsBackToContentLength(t *testing.T) {
	ps := newPushService(t, false)
	refused := atomic.Int64{}
	_, p, s, nd := runPusher(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength < 0 {
			refused.Add(1)
			http.Error(w, "length required", http.StatusLengthRequired)
			return
		}
		ps.ServeHTTP(w, r)
	}))
	const n = 50_000
	end := produce(s, n)
	if unsent, err := p.finish(end, 30*time.Second); unsent != 0 || err != nil {
		t.Fatalf("finish: %d unsent, %v", unsent, err)
	}
	store, _ := ps.current()
	checkHeld(t, store, nd, n)
	if refused.Load() == 0 {
		t.Fatal("the pusher never sent a chunked body")
	}
	t.Logf("%d chunked pushes refused with 411, then %d requests with a length", refused.Load(), ps.requests.Load())
}
