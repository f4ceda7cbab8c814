package handlers_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/websocket"

	"github.com/kfbridge/kfbridge/handlers"
	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/runner"
	"github.com/kfbridge/kfbridge/runs"
	"github.com/kfbridge/kfbridge/storage"
)

// The live-log tests run the real pieces: the step runner (runner.Main, with python3), the push
// and websocket handlers over real TCP, the log store with its spool, and a local-directory object
// store. Only the run registry is a fixed record, standing in for the run manager.

const (
	testRun   = "run-1"
	testStep  = "step-1"
	testToken = "api-token"
	pushToken = "push-token"
)

// fixedRuns is the run registry of the tests: one run with one step.
type fixedRuns struct{}

func (fixedRuns) Get(id string) (*runs.Run, error) {
	if id != testRun {
		return nil, fmt.Errorf("run %q: %w", id, runs.ErrNotFound)
	}
	return &runs.Run{ID: testRun, Status: runs.StatusRunning, Steps: []*runs.Step{{ID: testStep, Label: "step", Status: runs.StatusRunning}}}, nil
}

func (fixedRuns) CheckPushToken(runID, stepID, token string) bool {
	return runID == testRun && token == pushToken
}

// service is a kfbridge log service on a real listener.
type service struct {
	URL   string
	Logs  *logstream.Store
	srv   *http.Server
	ln    net.Listener
	done  chan struct{}
	store storage.Store
}

type serviceOptions struct {
	addr    string // listen address; "" picks a free port
	archive bool   // tail/serve the object store
	store   storage.Store
	opts    logstream.Options
	ws      func(*handlers.LogSocketConfig)
}

func startService(t testing.TB, o serviceOptions) *service {
	t.Helper()
	addr := o.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	opts := o.opts
	if opts.SpoolDir == "" {
		opts.SpoolDir = t.TempDir()
	}
	var archive logstream.Archive
	if o.archive {
		archive = logstream.StoreArchive{Store: o.store}
		opts.Archive = archive
	}
	logs := logstream.New(opts)
	authorize, check := handlers.TokenAuth(testToken)
	wsCfg := handlers.LogSocketConfig{Runs: fixedRuns{}, Logs: logs, Authorize: authorize, CheckToken: check}
	if o.ws != nil {
		o.ws(&wsCfg)
	}
	lc := handlers.LogsConfig{Runs: fixedRuns{}, Logs: logs, Archive: archive}
	r := chi.NewRouter()
	r.Post("/api/v1/runs/{id}/steps/{step}/lines", handlers.PushLines(nil, fixedRuns{}, logs).ServeHTTP)
	r.Post("/api/v1/runs/{id}/steps/{step}/end", handlers.PushEnd(nil, fixedRuns{}, logs).ServeHTTP)
	r.Get("/api/v1/ws", handlers.LogSocket(wsCfg).ServeHTTP)
	r.Get("/api/v1/runs/{id}/logs", handlers.RunLogSocket(wsCfg).ServeHTTP)
	r.Get("/api/v1/runs/{id}/steps/{step}/log", handlers.StepLog(lc).ServeHTTP)
	r.Get("/api/v1/runs/{id}/steps/{step}/log.txt", handlers.StepLogText(lc).ServeHTTP)
	s := &service{URL: "http://" + ln.Addr().String(), Logs: logs, ln: ln, done: make(chan struct{}), store: o.store,
		srv: &http.Server{Handler: r}}
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	t.Cleanup(s.kill)
	return s
}

// kill stops the service abruptly, like a killed process: connections are cut and the in-memory
// store is gone.
func (s *service) kill() {
	s.srv.Close()
	<-s.done
	s.Logs.Close()
}

// stepFixture is a local object store holding one node's dependency archive.
type stepFixture struct {
	storeDir, key, runDir string
	store                 storage.Store
}

func newStepFixture(t testing.TB, script string) *stepFixture {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is required")
		}
		t.Skip("python3 not installed")
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "job.py"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sum, err := storage.WriteArchive(&buf, src, []string{"job.py"})
	if err != nil {
		t.Fatal(err)
	}
	f := &stepFixture{storeDir: t.TempDir(), runDir: storage.RunDir("", testRun)}
	f.store, err = storage.Open(context.Background(), storage.Config{Endpoint: "file://" + f.storeDir, Bucket: "b"})
	if err != nil {
		t.Fatal(err)
	}
	f.key = storage.ArchiveKey("", "job", sum)
	if err := f.store.Put(context.Background(), f.key, &buf, int64(buf.Len())); err != nil {
		t.Fatal(err)
	}
	return f
}

// runStep runs the real step runner in a fresh working directory and returns its exit code and
// how long it took.
func (f *stepFixture) runStep(t testing.TB, pushURL string) (int, time.Duration) {
	t.Helper()
	wd := t.TempDir()
	old, _ := os.Getwd()
	if err := os.Chdir(wd); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(old)
	args := []string{"kfbridge-step", "--cos-endpoint", "file://" + f.storeDir, "--cos-bucket", "b",
		"--cos-directory", f.runDir, "--cos-dependencies-archive", filepath.Base(f.key), "--archive-key", f.key,
		"--file", "job.py", "--run-id", testRun, "--step-id", testStep, "--pipeline-name", "p"}
	if pushURL != "" {
		args = append(args, "--push-url", pushURL)
	}
	getenv := func(k string) string {
		if k == "KFBRIDGE_PUSH_TOKEN" {
			return pushToken
		}
		return os.Getenv(k)
	}
	// The runner's stdout goes to a file, as with the local runtime (a pod's goes to its log).
	out, err := os.Create(filepath.Join(t.TempDir(), "step.stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	start := time.Now()
	var stderr bytes.Buffer
	code := runner.Main(context.Background(), args, getenv, nil, out, &stderr)
	d := time.Since(start)
	if stderr.Len() > 0 {
		t.Logf("runner stderr: %s", limitText(stderr.String(), 2000))
	}
	return code, d
}

func limitText(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// archived returns the archive's log.ndjson.gz records (raw JSON lines) and log.txt.
func (f *stepFixture) archived(t testing.TB) ([][]byte, []byte, logstream.End) {
	t.Helper()
	ctx := context.Background()
	get := func(name string) []byte {
		rc, err := f.store.Get(ctx, storage.StepKey(f.runDir, testStep, name))
		if err != nil {
			t.Fatalf("archive %s: %v", name, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var end logstream.End
	if err := json.Unmarshal(get(logstream.ManifestName), &end); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(get(logstream.LogNDJSONName)))
	if err != nil {
		t.Fatal(err)
	}
	nd, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return splitLines(nd), get(logstream.LogTextName), end
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte{'\n'}) {
		if len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// viewer is a websocket client that keeps the raw JSON of every line it receives, resuming after
// its last seq whenever its connection drops.
type viewer struct {
	base     string
	mu       sync.Mutex
	lines    [][]byte // raw line JSON, in seq order, no duplicates
	last     int64
	dups     int
	end      *logstream.End
	connects int
	closes   map[int]int // close codes seen
	latency  func(recv time.Time, line []byte)
}

func newViewer(base string) *viewer {
	return &viewer{base: strings.Replace(base, "http", "ws", 1), closes: map[int]int{}}
}

// dial opens a connection subscribed to the test step after the viewer's last seq.
func (v *viewer) dial(ctx context.Context) (*websocket.Conn, error) {
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, v.base+"/api/v1/ws", http.Header{"Authorization": {"Bearer " + testToken}})
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	after := v.last
	v.connects++
	v.mu.Unlock()
	sub, _ := json.Marshal(map[string]any{"type": "subscribe", "run": testRun, "step": testStep, "after_seq": after})
	if err := conn.WriteMessage(websocket.TextMessage, sub); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

type frame struct {
	Type  string            `json:"type"`
	Step  string            `json:"step"`
	Lines []json.RawMessage `json:"lines"`
	logstream.End
	logstream.Gap
}

// read consumes one connection until it drops or the step ends; onLines may close the connection.
// It reports whether the step ended.
func (v *viewer) read(conn *websocket.Conn, onLines func(n int)) (bool, error) {
	for {
		_, b, err := conn.ReadMessage()
		recv := time.Now()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				v.mu.Lock()
				v.closes[ce.Code]++
				v.mu.Unlock()
			}
			return false, err
		}
		typ := frameType(b)
		switch typ {
		case "lines":
			// Records are canonical JSON objects starting with {"seq":, and that sequence
			// cannot occur unescaped inside a string, so the frame splits without decoding
			// (the test viewer must not be what slows a 1,000,000-line test down).
			i := bytes.Index(b, []byte(`"lines":[`))
			if i < 0 || !bytes.HasSuffix(b, []byte("]}")) {
				return false, fmt.Errorf("malformed lines frame: %.200s", b)
			}
			body := b[i+len(`"lines":[`) : len(b)-2]
			lines := bytes.Split(body, []byte(`},{"seq":`))
			v.mu.Lock()
			for k, l := range lines {
				if k > 0 {
					l = append([]byte(`{"seq":`), l...)
				}
				if k < len(lines)-1 {
					l = append(l, '}')
				}
				j := bytes.IndexByte(l, ',')
				seq, err := strconv.ParseInt(string(l[len(`{"seq":`):j]), 10, 64)
				if err != nil {
					v.mu.Unlock()
					return false, fmt.Errorf("line without seq: %.200s", l)
				}
				if seq <= v.last {
					v.dups++
					continue
				}
				if seq != v.last+1 {
					v.mu.Unlock()
					return false, fmt.Errorf("line %d after %d: a hole", seq, v.last)
				}
				v.lines = append(v.lines, bytes.Clone(l))
				v.last = seq
				if v.latency != nil {
					v.latency(recv, l)
				}
			}
			v.mu.Unlock()
			if onLines != nil {
				onLines(len(lines))
			}
		case "gap":
			return false, fmt.Errorf("unexpected gap frame: %s", b)
		case "step_end":
			var e logstream.End
			json.Unmarshal(b, &e)
			v.mu.Lock()
			v.end = &e
			v.mu.Unlock()
			return true, nil
		}
	}
}

// frameType returns the "type" of a server frame (always its first member).
func frameType(b []byte) string {
	const p = `{"type":"`
	if !bytes.HasPrefix(b, []byte(p)) {
		return ""
	}
	rest := b[len(p):]
	if i := bytes.IndexByte(rest, '"'); i >= 0 {
		return string(rest[:i])
	}
	return ""
}

// follow reads the step to its end, reconnecting after every drop; disconnect, if set, is asked
// after every frame whether to cut the connection now.
func (v *viewer) follow(ctx context.Context, disconnect func(total int64) bool) error {
	for ctx.Err() == nil {
		conn, err := v.dial(ctx)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		ended, err := v.read(conn, func(int) {
			if disconnect != nil {
				v.mu.Lock()
				n := v.last
				v.mu.Unlock()
				if disconnect(n) {
					// A real network drop: the TCP connection is cut without a close frame.
					conn.UnderlyingConn().Close()
				}
			}
		})
		conn.Close()
		if ended {
			return nil
		}
		_ = err
	}
	return ctx.Err()
}

// readNDJSON reads the step over REST (NDJSON), returning raw line JSON.
func readNDJSON(t testing.TB, base string) [][]byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/runs/"+testRun+"/steps/"+testStep+"/log", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out [][]byte
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	return out
}

// sameLines compares two line lists byte for byte, naming the first difference.
func sameLines(t testing.TB, what string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d lines, archive has %d", what, len(got), len(want))
	}
	for i := 0; i < min(len(got), len(want)); i++ {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: line %d differs:\n got %s\nwant %s", what, i+1, got[i], want[i])
		}
	}
}

// textOf renders raw line JSON as log text (what log.txt holds for valid UTF-8 output).
func textOf(t testing.TB, lines [][]byte) []byte {
	var b bytes.Buffer
	for _, raw := range lines {
		var l logstream.Line
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Fatal(err)
		}
		b.WriteString(l.Text)
		if !l.Partial {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}
