package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/websocket"

	"github.com/kfbridge/kfbridge/handlers"
	"github.com/kfbridge/kfbridge/internal/cputime"
	"github.com/kfbridge/kfbridge/internal/logtest"
	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/runs"
)

const (
	benchRun, benchStep   = "run1", "step1"
	benchAPI, benchPusher = "api-token", "push-secret"
)

type benchRuns struct{}

func (benchRuns) Get(id string) (*runs.Run, error) {
	return &runs.Run{ID: id, Status: runs.StatusRunning, Steps: []*runs.Step{{ID: benchStep, Status: runs.StatusRunning}}}, nil
}

func (benchRuns) CheckPushToken(runID, stepID, token string) bool { return token == benchPusher }

// startLogService starts the service's log path — push and end endpoints, the log store and the
// websocket — on a real loopback listener, and returns its URL and a stop function.
func startLogService(b *testing.B) (string, func()) {
	logs := logstream.New(logstream.Options{SpoolDir: b.TempDir()})
	authorize, check := handlers.TokenAuth(benchAPI)
	r := chi.NewRouter()
	r.Post("/api/v1/runs/{id}/steps/{step}/lines", handlers.PushLines(nil, benchRuns{}, logs).ServeHTTP)
	r.Post("/api/v1/runs/{id}/steps/{step}/end", handlers.PushEnd(nil, benchRuns{}, logs).ServeHTTP)
	r.Get("/api/v1/ws", handlers.LogSocket(handlers.LogSocketConfig{Runs: benchRuns{}, Logs: logs, Authorize: authorize, CheckToken: check}).ServeHTTP)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: r}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close(); logs.Close() }
}

// followAll follows the step over the websocket until its step_end, resuming after any drop (a
// viewer more than the service's in-memory window behind is closed with 4008 by design), and
// sends the last seq it got in order and the number of reconnections.
func followAll(base string, done chan<- [2]int64) {
	last, reconnects := int64(0), int64(0)
	for {
		conn, _, err := websocket.DefaultDialer.Dial(strings.Replace(base, "http", "ws", 1)+"/api/v1/ws",
			http.Header{"Authorization": {"Bearer " + benchAPI}})
		if err != nil {
			done <- [2]int64{last, reconnects}
			return
		}
		sub, _ := json.Marshal(map[string]any{"type": "subscribe", "run": benchRun, "step": benchStep, "after_seq": last})
		conn.WriteMessage(websocket.TextMessage, sub)
		var ended bool
		last, ended = logtest.LeanFollow(conn, last)
		conn.Close()
		if ended {
			done <- [2]int64{last, reconnects}
			return
		}
		reconnects++
	}
}

// BenchmarkStepThroughput measures the sustained log rate of one step whose program is a Go
// producer, against the same bytes over one raw loopback TCP connection, measured in the same
// iteration.
//
//   - pushed: the step's 1,000,000 lines (about 100 bytes of text each) are already numbered in
//     the runner's log.ndjson; the runner's pusher (pipelined requests, reading log.ndjson) sends
//     them to the service, which validates, spools and serves them to one websocket viewer that
//     follows live. This is the log path's own limit: the figure of issue 8.
//   - runner: the producer writes the raw lines into the runner's line sink as the step runs
//     (numbering, JSON encoding, log.txt, log.ndjson, SHA-256), with the pusher and the viewer
//     working at the same time. Only the child process's pipe is left out.
func BenchmarkStepThroughput(b *testing.B) {
	const n = 1_000_000
	text := strings.Repeat("p", 90)
	rawLines := make([]byte, 0, n*100)
	for i := 1; i <= n; i++ {
		rawLines = fmt.Appendf(rawLines, "%07d %s\n", i, text)
	}
	b.Run("pushed", func(b *testing.B) {
		dir := b.TempDir()
		nd, err := os.Create(filepath.Join(dir, "log.ndjson"))
		if err != nil {
			b.Fatal(err)
		}
		defer nd.Close()
		src := newSink(io.Discard, nil, io.Discard, nd, time.Now, 0)
		if err := src.pump(logstream.Stdout, bytes.NewReader(rawLines)); err != nil {
			b.Fatal(err)
		}
		data, err := os.ReadFile(nd.Name())
		if err != nil {
			b.Fatal(err)
		}
		benchThroughput(b, n, data, func() (*sink, *os.File, func()) { return src, nd, func() {} })
	})
	b.Run("runner", func(b *testing.B) {
		benchThroughput(b, n, nil, func() (*sink, *os.File, func()) {
			dir := b.TempDir()
			nd, err1 := os.Create(filepath.Join(dir, "log.ndjson"))
			txt, err2 := os.Create(filepath.Join(dir, "log.txt"))
			if err1 != nil || err2 != nil {
				b.Fatal(err1, err2)
			}
			src := newSink(io.Discard, nil, txt, nd, time.Now, 0)
			pr, pw := io.Pipe()
			go func() {
				// The producer writes in 64 KiB chunks, as a buffered Go program's stdout does.
				for off := 0; off < len(rawLines); off += 64 << 10 {
					pw.Write(rawLines[off:min(off+64<<10, len(rawLines))])
				}
				pw.Close()
			}()
			return src, nd, func() {
				src.pump(logstream.Stdout, pr)
				txt.Close()
			}
		})
	})
}

// benchThroughput runs one step per iteration: prepare returns the sink the pusher reads, its
// log.ndjson, and what produces the lines (run while the pusher and the viewer work). With data
// nil, the raw TCP baseline sends log.ndjson as it was written.
func benchThroughput(b *testing.B, n int, data []byte, prepare func() (*sink, *os.File, func())) {
	var ours, raw, cpu time.Duration
	var bytesOut int64
	cnt, reconnects := 0, int64(0)
	for b.Loop() {
		src, nd, produce := prepare()
		url, stop := startLogService(b)
		done := make(chan [2]int64, 1)
		go followAll(url, done)
		ctx, cancel := context.WithCancel(context.Background())
		start, cpu0 := time.Now(), cputime.Now()
		p := newPusher(url, benchRun, benchStep, benchPusher, src, nd)
		go p.run(ctx)
		produce()
		if unsent, err := p.finish(src.end(0), time.Minute); unsent != 0 || err != nil {
			b.Fatalf("%d lines not pushed: %v", unsent, err)
		}
		got := <-done
		ours += time.Since(start)
		cpu += cputime.Now() - cpu0
		cancel()
		stop()
		if got[0] != int64(n) {
			b.Fatalf("the viewer got %d lines in order, want %d", got[0], n)
		}
		reconnects += got[1]
		d := data
		if d == nil {
			var err error
			if d, err = os.ReadFile(nd.Name()); err != nil {
				b.Fatal(err)
			}
		}
		bytesOut = int64(len(d))
		raw += logtest.RawTCP(b, d, pushMaxBatch, n)
		cnt++
	}
	d := time.Duration(cnt)
	b.ReportMetric(float64(n)/(ours/d).Seconds(), "lines/s")
	b.ReportMetric(float64(bytesOut)/(ours/d).Seconds()/1e6, "MB/s")
	b.ReportMetric(float64(bytesOut)/(raw/d).Seconds()/1e6, "tcp-MB/s")
	b.ReportMetric(float64(raw)/float64(ours), "ratio-vs-tcp")
	b.ReportMetric(float64(reconnects)/float64(cnt), "reconnects")
	// CPU time of the whole process (producer, runner, service and viewer) per step: what the
	// path costs whatever else the machine is doing.
	b.ReportMetric(float64(cpu/d)/1e6, "cpu-ms/step")
}
