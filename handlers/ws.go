package handlers

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/websocket"

	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/runs"
)

// Websocket timing, after gorilla's chat example: pings come from the single writer at 9/10 of the
// pong wait, and every write has a deadline so a dead peer cannot hold the writer forever.
const (
	writeWait  = 10 * time.Second
	pongWait   = 60 * time.Second
	pingPeriod = pongWait * 9 / 10
	// readLimit caps client messages; viewers only send small control messages.
	readLimit = 4096
	// batchWait lets lines that arrive together leave in one frame without delaying a lone line
	// noticeably.
	batchWait = 5 * time.Millisecond
)

// RunGetter reads a run's state.
type RunGetter interface {
	Get(id string) (*runs.Run, error)
}

// frame is one websocket message from server to client.
type frame struct {
	Type     string           `json:"type"`
	Run      string           `json:"run,omitempty"`
	Step     string           `json:"step,omitempty"`
	Lines    []logstream.Line `json:"lines,omitempty"`
	Status   string           `json:"status,omitempty"`
	ExitCode *int             `json:"exit_code,omitempty"`
	Message  string           `json:"message,omitempty"`
	Seq      int64            `json:"seq,omitempty"`
	Data     any              `json:"data,omitempty"`
}

// RunLogs handles GET /api/v1/runs/{id}/logs: a websocket carrying every step's lines and the
// run's status events from the start of the run, then live. The server closes the socket
// normally after the run's final status. One goroutine writes; the handler's goroutine reads (so
// pongs and close frames are processed), and neither ever blocks a producer: the writer pulls
// from the log store at its own pace.
func RunLogs(log *slog.Logger, svc RunGetter, store *logstream.Store, origins OriginChecker) http.Handler {
	up := websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 32 << 10,
		CheckOrigin:     origins.Check,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runID := chi.URLParam(r, "id")
		if _, err := svc.Get(runID); err != nil {
			Error(log, w, r, err)
			return
		}
		if !origins.Check(r) {
			Error(log, w, r, fmt.Errorf("%w: websocket origin %q is not allowed", errForbidden, r.Header.Get("Origin")))
			return
		}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // the upgrader has answered the client
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			readUntilClosed(conn)
			cancel() // the peer is gone: stop writing
		}()
		writeRun(ctx, conn, runID, store, log)
		// Give the peer a moment to answer our close frame, then drop the connection, which also
		// ends the reader.
		select {
		case <-readDone:
		case <-time.After(2 * time.Second):
		}
		conn.Close()
		<-readDone
	})
}

// readUntilClosed processes control frames until the peer goes away or the writer closes the
// connection.
func readUntilClosed(conn *websocket.Conn) {
	conn.SetReadLimit(readLimit)
	conn.SetReadDeadline(time.Now().Add(pongWait))
	conn.SetPongHandler(func(string) error { return conn.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			return
		}
	}
}

// writeRun is the connection's only writer.
func writeRun(ctx context.Context, conn *websocket.Conn, runID string, store *logstream.Store, log *slog.Logger) {
	cur := store.NewCursor(runID)
	ping := time.NewTicker(pingPeriod)
	defer ping.Stop()
	write := func(v any) error {
		conn.SetWriteDeadline(time.Now().Add(writeWait))
		return conn.WriteJSON(v)
	}
	if err := write(frame{Type: "hello", Run: runID}); err != nil {
		return
	}
	for {
		b, changed := cur.Poll()
		if b.Empty() {
			select {
			case <-ctx.Done():
				return
			case <-ping.C:
				conn.SetWriteDeadline(time.Now().Add(writeWait))
				if err := conn.WriteMessage(websocket.PingMessage, nil); err != nil {
					return
				}
			case <-changed:
				// Give lines arriving together a moment to join one frame.
				time.Sleep(batchWait)
			}
			continue
		}
		for _, sl := range b.Lines {
			if err := write(frame{Type: "lines", Step: sl.Step, Lines: sl.Lines}); err != nil {
				return
			}
		}
		for _, ev := range b.Events {
			if err := write(frame{Type: ev.Type, Step: ev.Step, Status: ev.Status, ExitCode: ev.ExitCode, Message: ev.Message, Seq: ev.Seq, Data: ev.Data}); err != nil {
				return
			}
			if ev.Type == logstream.EventRun && runs.Terminal(ev.Status) {
				conn.SetWriteDeadline(time.Now().Add(writeWait))
				conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "run "+ev.Status))
				return
			}
		}
	}
}
