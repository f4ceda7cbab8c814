package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kfbridge/kfbridge/handlers"
	"github.com/kfbridge/kfbridge/logstream"
)

// millionLines prints 1,000,000 numbered lines as fast as Python can, with some ANSI colour, a
// lone \r and tabs so the bytes are not trivial.
const millionLines = `import sys
w = sys.stdout.write
for i in range(1, 1000001):
    w(f"line {i:07d} \x1b[32mok\x1b[0m\tprogress 50%\r100% {'x' * (i % 37)}\n")
`

// Ensure a viewer whose connection is cut 100 times while a 1,000,000-line step runs reassembles
// exactly the archived log: 0 lines lost, 0 duplicated, byte for byte.
func TestViewerSurvives100DisconnectsDuringMillionLineStep(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000,000-line step")
	}
	f := newStepFixture(t, millionLines)
	svc := startService(t, serviceOptions{store: f.store})
	v := newViewer(svc.URL)
	const drops = 100
	var mu sync.Mutex
	cuts := 0
	next := int64(1_000_000 / (drops + 1))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	followed := make(chan error, 1)
	go func() {
		followed <- v.follow(ctx, func(total int64) bool {
			mu.Lock()
			defer mu.Unlock()
			if cuts < drops && total >= next {
				cuts++
				next += 1_000_000 / (drops + 1)
				return true
			}
			return false
		})
	}()
	code, took := f.runStep(t, svc.URL)
	if code != 0 {
		t.Fatalf("step exit code %d", code)
	}
	if err := <-followed; err != nil {
		t.Fatalf("viewer: %v", err)
	}
	want, logTxt, end := f.archived(t)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("step took %s; viewer: %d forced drops, %d connections, %d duplicates dropped by seq, close codes %v",
		took.Round(time.Millisecond), cuts, v.connects, v.dups, v.closes)
	if cuts != drops {
		t.Fatalf("only %d forced disconnects happened", cuts)
	}
	if end.FinalSeq < 1_000_000 || int64(len(want)) != end.FinalSeq {
		t.Fatalf("archive: %d lines, manifest %+v", len(want), end)
	}
	sameLines(t, "viewer", v.lines, want)
	if !bytes.Equal(textOf(t, v.lines), logTxt) {
		t.Fatal("viewer's text differs from the archived log.txt")
	}
	if v.end == nil || v.end.FinalSeq != end.FinalSeq || v.end.SHA256 != end.SHA256 {
		t.Fatalf("step_end %+v, manifest %+v", v.end, end)
	}
}

// slowLines prints 30,000 lines over about 1.5 s.
const slowLines = `import sys, time
for i in range(1, 30001):
    print(f"line {i}")
    if i % 1000 == 0:
        time.sleep(0.05)
`

// Ensure a service killed and restarted (empty memory, new process state) in the middle of a run
// ends up with the step's complete log: the runner resends from the seq the new service reports.
func TestServiceRestartMidRunKeepsLogComplete(t *testing.T) {
	f := newStepFixture(t, slowLines)
	a := startService(t, serviceOptions{store: f.store})
	addr := a.ln.Addr().String()
	var b *service
	restarted := make(chan struct{})
	stepDone := make(chan struct{})
	go func() {
		defer close(restarted)
		for a.Logs.LastSeq(testRun, testStep) < 5000 {
			select {
			case <-stepDone:
				return // the step ended first: reported below
			case <-time.After(5 * time.Millisecond):
			}
		}
		held := a.Logs.LastSeq(testRun, testStep)
		a.kill()
		time.Sleep(300 * time.Millisecond) // down for a while: pushes fail and back off
		b = startService(t, serviceOptions{addr: addr, store: f.store})
		t.Logf("killed the service holding %d lines; restarted it empty", held)
	}()
	code, took := f.runStep(t, a.URL)
	close(stepDone)
	<-restarted
	if b == nil {
		t.Fatal("the step ended before the service held 5,000 lines: nothing was restarted")
	}
	if code != 0 {
		t.Fatalf("step exit code %d", code)
	}
	want, _, end := f.archived(t)
	deadline := time.Now().Add(10 * time.Second)
	for b.Logs.StepEnd(testRun, testStep) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	e := b.Logs.StepEnd(testRun, testStep)
	if e == nil || e.FinalSeq != end.FinalSeq {
		t.Fatalf("restarted service: end %+v, held %d lines; manifest %+v", e, b.Logs.LastSeq(testRun, testStep), end)
	}
	sameLines(t, "restarted service", readNDJSON(t, b.URL), want)
	t.Logf("step took %s; restarted service holds all %d lines", took.Round(time.Millisecond), len(want))
}

// Ensure a step whose runner cannot reach the service still succeeds, and a viewer of the service
// gets the whole log (live, while the step runs) through the object-store segments.
func TestUnreachableServiceLogArrivesThroughObjectStore(t *testing.T) {
	f := newStepFixture(t, slowLines)
	svc := startService(t, serviceOptions{archive: true, store: f.store,
		opts: logstream.Options{TailInterval: 100 * time.Millisecond, PushQuiet: 100 * time.Millisecond}})
	// What the run manager publishes when the runtime starts the step.
	svc.Logs.Publish(testRun, logstream.Event{Type: logstream.EventStep, Step: testStep, Status: "running"})
	// A port nothing listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()

	v := newViewer(svc.URL)
	var firstAt time.Time
	var once sync.Once
	v.latency = func(recv time.Time, _ []byte) { once.Do(func() { firstAt = recv }) }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	followed := make(chan error, 1)
	go func() { followed <- v.follow(ctx, nil) }()
	code, took := f.runStep(t, dead)
	stepEnd := time.Now()
	if code != 0 {
		t.Fatalf("step exit code %d with the service unreachable", code)
	}
	code0 := 0
	svc.Logs.Publish(testRun, logstream.Event{Type: logstream.EventStep, Step: testStep, Status: "succeeded", ExitCode: &code0})
	if err := <-followed; err != nil {
		t.Fatalf("viewer: %v", err)
	}
	want, _, end := f.archived(t)
	sameLines(t, "viewer via object store", v.lines, want)
	if v.end == nil || v.end.FinalSeq != end.FinalSeq {
		t.Fatalf("step_end %+v, manifest %+v", v.end, end)
	}
	if firstAt.IsZero() || !firstAt.Before(stepEnd) {
		t.Errorf("no line reached the viewer while the step ran (first at %v, step ended %v)", firstAt, stepEnd)
	}
	t.Logf("step took %s with the service unreachable; first line reached the viewer %s before the step ended",
		took.Round(time.Millisecond), stepEnd.Sub(firstAt).Round(time.Millisecond))
}

// Ensure a viewer that stops reading never slows the step or the other viewers: the step's
// duration stays within noise of a run with only a healthy viewer, the healthy viewer gets every
// line, and the stuck viewer is dropped.
func TestStuckViewerDoesNotSlowStepOrOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("two 300,000-line steps")
	}
	script := `import sys
w = sys.stdout.write
for i in range(1, 300001):
    w(f"line {i:07d} {'y' * 80}\n")
`
	f := newStepFixture(t, script)
	run := func(stuck bool) (time.Duration, *viewer, *websocket.Conn) {
		svc := startService(t, serviceOptions{store: f.store, ws: func(c *handlers.LogSocketConfig) { c.WriteWait = time.Second }})
		var stuckConn *websocket.Conn
		if stuck {
			// Subscribes and never reads: its socket buffers fill and the server must drop it.
			v := newViewer(svc.URL)
			c, err := v.dial(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			stuckConn = c
		}
		healthy := newViewer(svc.URL)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- healthy.follow(ctx, nil) }()
		code, took := f.runStep(t, svc.URL)
		if code != 0 {
			t.Fatalf("exit code %d", code)
		}
		if err := <-done; err != nil {
			t.Fatalf("healthy viewer: %v", err)
		}
		return took, healthy, stuckConn
	}
	base, _, _ := run(false)
	with, healthy, stuck := run(true)
	want, _, _ := f.archived(t)
	sameLines(t, "healthy viewer beside a stuck one", healthy.lines, want)
	ratio := float64(with) / float64(base)
	t.Logf("step with a healthy viewer: %s; with a stuck viewer too: %s (%.2fx)", base.Round(time.Millisecond), with.Round(time.Millisecond), ratio)
	// Coarse on purpose (timing belongs in benchmarks): a viewer that held the step back would
	// stall it for whole write deadlines, far beyond 3x; the fine figure is logged above and
	// measured in docs/benchmarks.md.
	if ratio > 3 {
		t.Errorf("a stuck viewer slowed the step %.2fx", ratio)
	}
	// The stuck viewer was dropped (4008) while it held the step back, or — when the kernel's
	// socket buffers happened to absorb enough that it never fell out of the window before the
	// step ended — it is served to the end. Either way draining it ends in a closed connection or
	// in the step's step_end, never in a wait with the log half sent.
	stuck.SetReadDeadline(time.Now().Add(10 * time.Second))
	sawEnd := false
	for {
		_, msg, err := stuck.ReadMessage()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() && !sawEnd {
				t.Fatal("the stuck viewer is still connected and its log stopped before step_end")
			}
			break
		}
		if bytes.Contains(msg, []byte(`"type":"step_end"`)) {
			sawEnd = true
		}
	}
}

// Ensure a viewer that reads, but more slowly than the step writes, is closed with 4008 once it
// falls behind the in-memory window, and resumes from its last seq without losing a line.
func TestSlowViewerEvictedWith4008AndResumes(t *testing.T) {
	svc := startService(t, serviceOptions{opts: logstream.Options{RingLines: 500}})
	const n = 100_000
	v := newViewer(svc.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- v.follow(ctx, func(int64) bool {
			v.mu.Lock()
			evicted := v.closes[handlers.CloseSlowViewer] > 0
			v.mu.Unlock()
			if !evicted {
				time.Sleep(2 * time.Millisecond) // a slow reader, until it has been evicted
			}
			return false
		})
	}()
	ts := time.Now()
	text := strings.Repeat("z", 180)
	appendLines := func(from, to int64) {
		for i := from; i <= to; i += 100 {
			var batch []logstream.Line
			for j := i; j < i+100 && j <= to; j++ {
				batch = append(batch, logstream.Line{Seq: j, TS: ts, Stream: logstream.Stdout, Text: fmt.Sprintf("line %d %s", j, text)})
			}
			svc.Logs.Append(testRun, testStep, batch)
		}
	}
	// The viewer first keeps up with the step…
	appendLines(1, 10)
	for deadline := time.Now().Add(10 * time.Second); ; {
		v.mu.Lock()
		last := v.last
		v.mu.Unlock()
		if last == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the viewer never caught up with the first lines (at %d)", last)
		}
		time.Sleep(time.Millisecond)
	}
	// …then the step writes ~20 MB faster than the viewer reads.
	appendLines(11, n)
	// The step is still running (no end yet) while the viewer lags: that is when it is evicted.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		v.mu.Lock()
		evicted := v.closes[handlers.CloseSlowViewer] > 0
		v.mu.Unlock()
		if evicted {
			break
		}
	}
	svc.Logs.SetEnd(testRun, testStep, logstream.End{FinalSeq: n})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closes[handlers.CloseSlowViewer] == 0 {
		t.Errorf("the slow viewer was never closed with 4008 (closes %v)", v.closes)
	}
	if len(v.lines) != n || v.last != n {
		t.Fatalf("got %d lines up to %d, want %d", len(v.lines), v.last, n)
	}
	t.Logf("slow viewer: %d connections, close codes %v, all %d lines, %d duplicates dropped", v.connects, v.closes, n, v.dups)
}

// Ensure the websocket refuses a foreign Origin before upgrading, demands authentication within
// the auth wait (4001), accepts a first-message token, and enforces the read limit.
func TestLogSocketAuthOriginAndLimits(t *testing.T) {
	svc := startService(t, serviceOptions{ws: func(c *handlers.LogSocketConfig) { c.AuthWait = 200 * time.Millisecond }})
	svc.Logs.Append(testRun, testStep, []logstream.Line{{Seq: 1, TS: time.Now(), Stream: logstream.Stdout, Text: "hi"}})
	u := strings.Replace(svc.URL, "http", "ws", 1) + "/api/v1/ws"

	_, resp, err := websocket.DefaultDialer.Dial(u, http.Header{"Origin": {"https://evil.example"}, "Authorization": {"Bearer " + testToken}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: err %v, resp %v", err, resp)
	}

	// No credentials: closed with 4001 after the auth wait.
	c, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	code := readUntilClose(c)
	if code != handlers.CloseUnauthorized {
		t.Fatalf("unauthenticated: close code %d", code)
	}

	// Token in the first message, then a subscription.
	c, _, err = websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.WriteJSON(map[string]string{"type": "auth", "token": testToken})
	c.WriteJSON(map[string]any{"type": "subscribe", "run": testRun, "step": testStep})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	gotLine := false
	for !gotLine {
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("first-message auth: %v", err)
		}
		gotLine = bytes.Contains(b, []byte(`"type":"lines"`)) && bytes.Contains(b, []byte(`"text":"hi"`))
	}
	// A message over the read limit ends the connection.
	c.WriteMessage(websocket.TextMessage, []byte(`{"type":"subscribe","run":"`+strings.Repeat("r", 8000)+`"}`))
	if code := readUntilClose(c); code != websocket.CloseMessageTooBig {
		t.Fatalf("oversized message: close code %d", code)
	}

	// A browser may authenticate with subprotocols; only kfbridge.v1 is echoed back.
	d := websocket.Dialer{Subprotocols: []string{"kfbridge.v1", "kfbridge.token." + testToken}}
	c, resp, err = d.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "kfbridge.v1" {
		t.Errorf("selected subprotocol %q", got)
	}
	c.WriteJSON(map[string]any{"type": "subscribe", "run": testRun, "step": testStep})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("subprotocol auth: %v", err)
		}
		if frameType(b) == "lines" {
			break
		}
	}
	c.Close()
	d = websocket.Dialer{Subprotocols: []string{"kfbridge.v1", "kfbridge.token.wrong"}}
	if c, _, err = d.Dial(u, nil); err != nil {
		t.Fatal(err)
	}
	if code := readUntilClose(c); code != handlers.CloseUnauthorized {
		t.Fatalf("wrong subprotocol token: close code %d", code)
	}

	// Unknown runs are reported, not silently ignored.
	c, _, err = websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + testToken}})
	if err != nil {
		t.Fatal(err)
	}
	c.WriteJSON(map[string]any{"type": "subscribe", "run": "nope"})
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("no error frame for an unknown run: %v", err)
		}
		if bytes.Contains(b, []byte(`"code":"run_not_found"`)) {
			break
		}
	}
	c.Close()
}

func readUntilClose(c *websocket.Conn) int {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				return ce.Code
			}
			return -1
		}
	}
}

// Ensure the REST endpoints resume exactly: NDJSON after_seq and limit, SSE with Last-Event-ID
// ending in step_end, and log.txt byte ranges of the archived raw text (invalid UTF-8 kept).
func TestRESTLogResumeSSEAndRange(t *testing.T) {
	f := newStepFixture(t, `import sys
for i in range(1, 101):
    print(f"line {i}")
sys.stdout.flush()
sys.stdout.buffer.write(b"raw \xff\xfe bytes\n")
`)
	svc := startService(t, serviceOptions{archive: true, store: f.store})
	if code, _ := f.runStep(t, svc.URL); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	get := func(path string, hdr map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest(http.MethodGet, svc.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	base := "/api/v1/runs/" + testRun + "/steps/" + testStep
	resp, body := get(base+"/log?after_seq=50&limit=3", nil)
	lines := splitLines(body)
	if len(lines) != 3 || !bytes.HasPrefix(lines[0], []byte(`{"seq":51,`)) {
		t.Fatalf("after_seq=50&limit=3: %s", body)
	}
	if resp.Header.Get("X-Kfbridge-Final-Seq") == "" {
		t.Error("no X-Kfbridge-Final-Seq on a finished step")
	}
	_, body = get(base+"/log", map[string]string{"Accept": "text/event-stream", "Last-Event-ID": "99"})
	s := string(body)
	if !strings.HasPrefix(s, "id: 100\n") || !strings.Contains(s, "event: step_end\n") || strings.Contains(s, "id: 99\n") {
		t.Fatalf("SSE from Last-Event-ID 99:\n%s", s)
	}
	_, want, _ := f.archived(t)
	resp, body = get(base+"/log.txt", map[string]string{"Range": "bytes=10-"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, want[10:]) {
		t.Fatalf("log.txt Range: %s, %q", resp.Status, body)
	}
	if !bytes.Contains(want, []byte("raw \xff\xfe bytes\n")) {
		t.Fatalf("archived log.txt lost the raw bytes: %q", want[len(want)-60:])
	}
	// Frames carry U+FFFD for the invalid bytes.
	found := false
	for _, raw := range readNDJSON(t, svc.URL) {
		var l logstream.Line
		json.Unmarshal(raw, &l)
		if strings.HasPrefix(l.Text, "raw ") {
			found = true
			if l.Text != "raw \ufffd\ufffd bytes" {
				t.Fatalf("invalid UTF-8 line = %q", l.Text)
			}
		}
	}
	if !found {
		t.Fatal("the raw-bytes line is missing")
	}
}

// Ensure the run-scoped socket delivers every step's lines, step_end, then the step's terminal
// event and the run's final event, sends heartbeats with the last seq, and closes with 1000 after
// the run ends.
func TestRunScopedSocketOrderAndClose(t *testing.T) {
	svc := startService(t, serviceOptions{ws: func(c *handlers.LogSocketConfig) { c.Heartbeat = 50 * time.Millisecond }})
	logs := svc.Logs
	logs.Publish(testRun, logstream.Event{Type: logstream.EventStep, Step: testStep, Status: "running"})
	u := strings.Replace(svc.URL, "http", "ws", 1) + "/api/v1/runs/" + testRun + "/logs"
	c, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + testToken}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		ts := time.Now()
		for i := int64(1); i <= 3; i++ {
			logs.Append(testRun, testStep, []logstream.Line{{Seq: i, TS: ts, Stream: logstream.Stdout, Text: fmt.Sprint("l", i)}})
			time.Sleep(80 * time.Millisecond) // long enough for a heartbeat in between
		}
		code := 0
		// The terminal event arrives before the end record: it must still follow step_end.
		logs.Publish(testRun, logstream.Event{Type: logstream.EventStep, Step: testStep, Status: "succeeded", ExitCode: &code})
		logs.SetEnd(testRun, testStep, logstream.End{FinalSeq: 3})
		logs.Publish(testRun, logstream.Event{Type: logstream.EventRun, Status: "succeeded"})
	}()
	var order []string
	heartbeat := false
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			ce, ok := err.(*websocket.CloseError)
			if !ok || ce.Code != websocket.CloseNormalClosure {
				t.Fatalf("socket ended with %v, want close 1000", err)
			}
			break
		}
		typ := frameType(b)
		switch typ {
		case "heartbeat":
			heartbeat = heartbeat || bytes.Contains(b, []byte(`"steps":{"`+testStep+`":`))
		case "hello":
		case "step", "run":
			var f struct{ Status string }
			json.Unmarshal(b, &f)
			order = append(order, typ+":"+f.Status)
		default:
			order = append(order, typ)
		}
	}
	got := strings.Join(order, " ")
	// Lines may be batched, but the last three entries are fixed.
	if !strings.HasSuffix(got, "step_end step:succeeded run:succeeded") || !strings.Contains(got, "lines") {
		t.Fatalf("frame order: %s", got)
	}
	if !heartbeat {
		t.Error("no heartbeat carrying the step's last seq")
	}
}
