package handlers_test

// Live-log benchmarks (issue 8). Each reports its figures with b.ReportMetric; ratios are measured
// in the same run. Commands and results: docs/benchmarks.md, "Live logs (issue 8)".

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kfbridge/kfbridge/internal/logtest"
	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/storage"
)

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// paced prints n lines at rate lines/s, each carrying its wall-clock write time in ns.
func pacedScript(n, rate int) string {
	return fmt.Sprintf(`import time
t0 = time.perf_counter()
for i in range(%d):
    target = t0 + i / %d
    while True:
        d = target - time.perf_counter()
        if d <= 0:
            break
        time.sleep(d if d > 0.002 else 0)
    print(f"t={time.time_ns()}")
`, n, rate)
}

// lineLatency reads the write time a paced line carries and returns its latency at recv.
func lineLatency(recv time.Time, line []byte) (time.Duration, bool) {
	i := bytes.Index(line, []byte(`"text":"t=`))
	if i < 0 {
		return 0, false
	}
	rest := line[i+len(`"text":"t=`):]
	j := bytes.IndexByte(rest, '"')
	ns, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	if err != nil {
		return 0, false
	}
	return recv.Sub(time.Unix(0, ns)), true
}

// BenchmarkLiveLatency measures runner line → websocket viewer latency at 1,000 lines/s: a Python
// step prints a timestamped line every millisecond through the real runner, push path, service
// and websocket.
func BenchmarkLiveLatency(b *testing.B) {
	f := newStepFixture(b, pacedScript(3000, 1000))
	var all []time.Duration
	for b.Loop() {
		svc := startService(b, serviceOptions{store: f.store})
		v := newViewer(svc.URL)
		var mu sync.Mutex
		v.latency = func(recv time.Time, line []byte) {
			if d, ok := lineLatency(recv, line); ok {
				mu.Lock()
				all = append(all, d)
				mu.Unlock()
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		done := make(chan error, 1)
		go func() { done <- v.follow(ctx, nil) }()
		if code, _ := f.runStep(b, svc.URL); code != 0 {
			b.Fatalf("exit code %d", code)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		cancel()
		svc.kill()
	}
	b.ReportMetric(ms(percentile(all, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(all, 0.99)), "p99-ms")
	b.ReportMetric(ms(percentile(all, 1)), "max-ms")
	b.ReportMetric(float64(len(all)), "lines")
}

// BenchmarkPythonMillionLines compares a Python step printing 1,000,000 lines, run through the
// real runner and followed live by a websocket viewer until its step_end, with the same script
// writing to /dev/null (and to a pipe into cat, for scale). It also reports how long after the
// step's end its manifest.json was in the object store.
func BenchmarkPythonMillionLines(b *testing.B) {
	f := newStepFixture(b, millionLines)
	script := filepath.Join(b.TempDir(), "job.py")
	os.WriteFile(script, []byte(millionLines), 0o644)
	devnull := func(cat bool) time.Duration {
		var cmd *exec.Cmd
		if cat {
			cmd = exec.Command("sh", "-c", "python3 -u "+script+" | cat > /dev/null")
		} else {
			cmd = exec.Command("python3", "-u", script)
		}
		cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1")
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var null, cat, step, followed, manifest time.Duration
	n := 0
	for b.Loop() {
		null += devnull(false)
		cat += devnull(true)
		svc := startService(b, serviceOptions{store: f.store})
		v := newViewer(svc.URL)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		done := make(chan error, 1)
		// Watch for the manifest while the step runs.
		key := storage.StepKey(f.runDir, testStep, logstream.ManifestName)
		f.store.(interface {
			Delete(context.Context, string) error
		}).Delete(context.Background(), key)
		seen := make(chan time.Time, 1)
		go func() {
			for ctx.Err() == nil {
				if _, err := f.store.Stat(context.Background(), key); err == nil {
					seen <- time.Now()
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		start := time.Now()
		var viewerDone time.Time
		var lastTS time.Time
		go func() {
			// The viewer checks that every seq arrives once and in order, scanning frames
			// (logtest.LeanFollow) rather than decoding them: a browser's parsing is not the
			// service's cost, and on this 2-core machine it would compete with the step.
			var err error
			for {
				conn, derr := v.dial(ctx)
				if derr != nil {
					err = derr
					break
				}
				last, ended := logtest.LeanFollow(conn, v.last)
				conn.Close()
				v.mu.Lock()
				v.last = last
				v.mu.Unlock()
				if ended {
					break
				}
			}
			viewerDone = time.Now()
			if err == nil {
				lastTS, err = lastLineTS(svc)
			}
			done <- err
		}()
		code, took := f.runStep(b, svc.URL)
		if code != 0 {
			b.Fatalf("exit code %d", code)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		// Followed: until the viewer holds the whole log and its step_end.
		followed += viewerDone.Sub(start)
		step += took
		at := <-seen
		// The step ends when its last line is written: the runner's final system line.
		manifest += at.Sub(lastTS)
		if e := svc.Logs.StepEnd(testRun, testStep); e == nil || v.last != e.FinalSeq {
			b.Fatalf("viewer stopped at %d, end %+v", v.last, e)
		}
		cancel()
		svc.kill()
		n++
	}
	d := time.Duration(n)
	b.ReportMetric(ms(null/d), "devnull-ms")
	b.ReportMetric(ms(cat/d), "cat-ms")
	b.ReportMetric(ms(step/d), "step-ms")
	b.ReportMetric(ms(followed/d), "followed-ms")
	b.ReportMetric(float64(followed)/float64(null), "followed/devnull")
	b.ReportMetric(float64(step)/float64(null), "step/devnull")
	b.ReportMetric(float64(cat)/float64(null), "cat/devnull")
	b.ReportMetric(ms(manifest/d), "manifest-after-end-ms")
}

// lastLineTS returns the timestamp of the step's last line held by the service.
func lastLineTS(svc *service) (time.Time, error) {
	last := svc.Logs.LastSeq(testRun, testStep)
	ch, err := svc.Logs.Read(context.Background(), testRun, testStep, last-1, 1<<20)
	if err != nil || len(ch.Records) == 0 {
		return time.Time{}, fmt.Errorf("last line: %v", err)
	}
	l, err := ch.Records[0].Decode()
	return l.TS, err
}

// BenchmarkThousandViewers connects 1,000 websocket viewers to one step, measures the memory
// each idle viewer costs (server and client side together, in this process), then appends 1,000
// lines/s for 3 s and measures every viewer's latency (per line, bounded above by the latency of
// the oldest line of its frame).
func BenchmarkThousandViewers(b *testing.B) {
	const viewers, rate, seconds = 1000, 1000, 3
	var lat []time.Duration
	var perViewer float64
	for b.Loop() {
		svc := startService(b, serviceOptions{})
		svc.Logs.Append(testRun, testStep, []logstream.Line{{Seq: 1, TS: time.Now(), Stream: logstream.Stdout, Text: "start"}})
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		var mu sync.Mutex
		var wg sync.WaitGroup
		conns := make([]*websocket.Conn, viewers)
		u := strings.Replace(svc.URL, "http", "ws", 1) + "/api/v1/ws"
		for i := range conns {
			c, _, err := websocket.DefaultDialer.Dial(u, http.Header{"Authorization": {"Bearer " + testToken}})
			if err != nil {
				b.Fatal(err)
			}
			c.WriteJSON(map[string]any{"type": "subscribe", "run": testRun, "step": testStep, "after_seq": 1})
			conns[i] = c
		}
		time.Sleep(500 * time.Millisecond) // subscriptions settle; every viewer is idle
		runtime.GC()
		var idle runtime.MemStats
		runtime.ReadMemStats(&idle)
		perViewer = float64(int64(idle.HeapInuse+idle.StackInuse)-int64(before.HeapInuse+before.StackInuse)) / viewers
		total := rate * seconds
		for _, c := range conns {
			wg.Add(1)
			go func(c *websocket.Conn) {
				defer wg.Done()
				defer c.Close()
				var mine []time.Duration
				seen := 1
				for seen < total+1 {
					c.SetReadDeadline(time.Now().Add(30 * time.Second))
					_, msg, err := c.ReadMessage()
					recv := time.Now()
					if err != nil {
						break
					}
					if !bytes.HasPrefix(msg, []byte(`{"type":"lines"`)) {
						continue
					}
					// The frame's first line waited longest: its latency is counted for every line
					// of the frame (an upper bound that keeps the client's own cost low).
					n := bytes.Count(msg, []byte(`{"seq":`))
					i := bytes.Index(msg, []byte(`"ts":"`))
					if i < 0 || n == 0 {
						continue
					}
					rest := msg[i+6:]
					j := bytes.IndexByte(rest, '"')
					ts, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
					if err != nil {
						continue
					}
					for k := 0; k < n; k++ {
						mine = append(mine, recv.Sub(ts))
					}
					seen += n
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}(c)
		}
		tick := time.NewTicker(time.Second / rate)
		for i := 2; i <= total+1; i++ {
			<-tick.C
			svc.Logs.Append(testRun, testStep, []logstream.Line{{Seq: int64(i), TS: time.Now(), Stream: logstream.Stdout, Text: "line " + strconv.Itoa(i)}})
		}
		tick.Stop()
		wg.Wait()
		svc.kill()
	}
	b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
	b.ReportMetric(perViewer/1024, "KiB/idle-viewer")
	b.ReportMetric(float64(len(lat)), "deliveries")
}
