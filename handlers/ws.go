package handlers

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/websocket"

	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/runs"
)

// Websocket limits and timing (docs/protocol.md). Pings come from the single writer well within
// the pong wait, and every write has a deadline so a dead peer cannot hold the writer forever.
const (
	pongWait   = 60 * time.Second
	pingPeriod = 30 * time.Second
	// readLimit caps client messages; viewers only send small control messages.
	readLimit = 4096
	// maxBatchBytes closes a lines frame; a frame also closes as soon as the store has nothing
	// more, so a lone line leaves at once and a burst leaves in 64 KiB frames.
	maxBatchBytes = 64 << 10
	// Close codes of the protocol.
	CloseUnauthorized = 4001
	CloseRunNotFound  = 4004
	CloseSlowViewer   = 4008
)

// RunGetter reads a run's state.
type RunGetter interface {
	Get(id string) (*runs.Run, error)
}

// Subprotocol is the websocket subprotocol of docs/protocol.md; a client may offer
// subprotocolTokenPrefix+token beside it to authenticate from a browser.
const (
	Subprotocol            = "kfbridge.v1"
	subprotocolTokenPrefix = "kfbridge.token."
)

// LogSocketConfig configures the log websockets.
type LogSocketConfig struct {
	Log     *slog.Logger
	Runs    RunGetter
	Logs    *logstream.Store
	Origins OriginChecker
	// Authorize reports whether the upgrade request itself is authenticated (Authorization header,
	// ?token=, or a session cookie the web UI adds). Nil admits nobody before a first-message auth.
	Authorize func(r *http.Request) bool
	// CheckToken validates the token of a first {"type":"auth"} message. Nil refuses them.
	CheckToken func(token string) bool
	// Heartbeat (15 s), WriteWait (10 s) and AuthWait (5 s) default when zero.
	Heartbeat time.Duration
	WriteWait time.Duration
	AuthWait  time.Duration
}

func (c *LogSocketConfig) defaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.WriteWait <= 0 {
		c.WriteWait = 10 * time.Second
	}
	if c.AuthWait <= 0 {
		c.AuthWait = 5 * time.Second
	}
}

// TokenAuth returns the Authorize and CheckToken functions for one API token: the token in an
// "Authorization: Bearer" (or "token") header, or in ?token= on the upgrade request.
func TokenAuth(token string) (authorize func(*http.Request) bool, check func(string) bool) {
	check = func(got string) bool {
		return got != "" && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
	}
	authorize = func(r *http.Request) bool {
		got := bearer(r)
		if got == "" {
			got = r.URL.Query().Get("token")
		}
		return check(got)
	}
	return authorize, check
}

// LogSocket handles GET /api/v1/ws: one connection, any number of subscriptions.
func LogSocket(cfg LogSocketConfig) http.Handler {
	cfg.defaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveSocket(cfg, w, r, nil)
	})
}

// RunLogSocket handles GET /api/v1/runs/{id}/logs: a connection subscribed at once to every step
// and event of the run (or to one ?step= from ?after_seq=), closed with 1000 after the run's final
// event.
func RunLogSocket(cfg LogSocketConfig) http.Handler {
	cfg.defaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runID := chi.URLParam(r, "id")
		if _, err := cfg.Runs.Get(runID); err != nil {
			Error(cfg.Log, w, r, err)
			return
		}
		q := r.URL.Query()
		m := clientMsg{Type: "subscribe", Run: runID, Step: q.Get("step")}
		m.AfterSeq, _ = strconv.ParseInt(q.Get("after_seq"), 10, 64)
		m.EventsAfter, _ = strconv.ParseInt(q.Get("events_after"), 10, 64)
		serveSocket(cfg, w, r, &m)
	})
}

// openSockets counts the open log websockets of the process. Frames to many viewers are paced:
// a connection sends at most one frame per frameGap(openSockets) (40 µs per open socket, at most
// 50 ms), so with one viewer a line leaves at once while with a thousand the same work goes out
// in fewer, fuller frames instead of a write per line per viewer.
var openSockets atomic.Int64

func frameGap() time.Duration {
	return min(time.Duration(openSockets.Load())*40*time.Microsecond, 50*time.Millisecond)
}

var upgrader = websocket.Upgrader{
	ReadBufferSize: 1024,
	// Idle connections hold no write buffer: it is taken from the pool for each frame.
	WriteBufferPool: &sync.Pool{},
}

func serveSocket(cfg LogSocketConfig, w http.ResponseWriter, r *http.Request, preset *clientMsg) {
	if !cfg.Origins.Check(r) {
		Error(cfg.Log, w, r, fmt.Errorf("%w: websocket origin %q is not allowed", errForbidden, r.Header.Get("Origin")))
		return
	}
	authed := cfg.Authorize != nil && cfg.Authorize(r)
	// Browsers cannot set headers on a websocket but can offer subprotocols: "kfbridge.v1" plus
	// "kfbridge.token.<token>" authenticates the upgrade itself. Only "kfbridge.v1" is echoed.
	for _, p := range websocket.Subprotocols(r) {
		if tok, ok := strings.CutPrefix(p, subprotocolTokenPrefix); ok && !authed {
			authed = cfg.CheckToken != nil && cfg.CheckToken(tok)
		}
	}
	up := upgrader
	up.CheckOrigin = func(*http.Request) bool { return true } // checked above, with a problem answer
	up.Subprotocols = []string{Subprotocol}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered the client
	}
	openSockets.Add(1)
	defer openSockets.Add(-1)
	ctx, cancel := context.WithCancel(context.Background())
	c := &wsConn{cfg: cfg, ws: ws, ctx: ctx, cancel: cancel, authed: authed, preset: preset,
		wake: make(chan struct{}, 1), watching: map[string]func(){}}
	if preset != nil {
		c.closeOnRunEnd = true
		if authed {
			c.subscribe(*preset)
		}
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		c.read()
	}()
	c.writeLoop()
	cancel()
	// Give the peer a moment to answer our close frame, then drop the connection, which also
	// ends the reader.
	select {
	case <-readDone:
	case <-time.After(time.Second):
	}
	ws.Close()
	<-readDone
	c.mu.Lock()
	for _, stop := range c.watching {
		stop()
	}
	c.mu.Unlock()
}

// clientMsg is any client → server message.
type clientMsg struct {
	Type        string           `json:"type"`
	Token       string           `json:"token,omitempty"`
	Run         string           `json:"run,omitempty"`
	Step        string           `json:"step,omitempty"`
	AfterSeq    int64            `json:"after_seq,omitempty"`
	EventsAfter int64            `json:"events_after,omitempty"`
	Steps       map[string]int64 `json:"steps,omitempty"`
}

// wsConn is one viewer connection: the reader goroutine handles client messages, the writer
// goroutine (the only one writing to the socket) pulls every subscription from the store at the
// connection's own pace.
type wsConn struct {
	cfg           LogSocketConfig
	ws            *websocket.Conn
	ctx           context.Context
	cancel        context.CancelFunc
	preset        *clientMsg
	closeOnRunEnd bool
	wake          chan struct{}
	lastLines     time.Time // when the writer last sent a lines frame

	mu        sync.Mutex
	authed    bool
	subs      []*wsSub
	outbox    [][]byte
	watching  map[string]func()
	closeCode int
	closeText string
}

// wsSub is one subscription: a step, or "*" for every step and the events of a run.
type wsSub struct {
	run, step string
	pos       map[string]int64 // last seq delivered per step
	events    int64
	ended     map[string]bool // step_end sent
	live      map[string]bool // the viewer was caught up with the step at least once
	known     []string        // the run's steps at subscribe time
	prefix    map[string][]byte
}

func (s *wsSub) all() bool { return s.step == "" || s.step == "*" }

func (c *wsConn) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// closeWith ends the connection with a close code, sent by the writer on its way out.
func (c *wsConn) closeWith(code int, text string) {
	c.mu.Lock()
	if c.closeCode == 0 {
		c.closeCode, c.closeText = code, text
	}
	c.mu.Unlock()
	c.cancel()
}

func (c *wsConn) queue(v any) {
	b, _ := json.Marshal(v)
	c.mu.Lock()
	c.outbox = append(c.outbox, b)
	c.mu.Unlock()
	c.poke()
}

type errorFrame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Run     string `json:"run,omitempty"`
	Step    string `json:"step,omitempty"`
}

// read processes client messages until the peer goes away.
func (c *wsConn) read() {
	defer c.cancel()
	ws := c.ws
	ws.SetReadLimit(readLimit)
	ws.SetReadDeadline(time.Now().Add(pongWait))
	ws.SetPongHandler(func(string) error { return ws.SetReadDeadline(time.Now().Add(pongWait)) })
	c.mu.Lock()
	authed := c.authed
	c.mu.Unlock()
	var authTimer *time.Timer
	if !authed {
		authTimer = time.AfterFunc(c.cfg.AuthWait, func() {
			c.mu.Lock()
			ok := c.authed
			c.mu.Unlock()
			if !ok {
				c.closeWith(CloseUnauthorized, "authentication required")
			}
		})
		defer authTimer.Stop()
	}
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		ws.SetReadDeadline(time.Now().Add(pongWait))
		var m clientMsg
		if err := json.Unmarshal(data, &m); err != nil {
			c.queue(errorFrame{Type: "error", Code: "bad_message", Message: "not a JSON message: " + err.Error()})
			continue
		}
		c.mu.Lock()
		authed = c.authed
		c.mu.Unlock()
		switch {
		case m.Type == "auth":
			if c.cfg.CheckToken == nil || !c.cfg.CheckToken(m.Token) {
				c.closeWith(CloseUnauthorized, "invalid token")
				return
			}
			c.mu.Lock()
			c.authed = true
			c.mu.Unlock()
			if c.preset != nil {
				c.subscribe(*c.preset)
			}
		case !authed:
			c.closeWith(CloseUnauthorized, "authenticate first")
			return
		case m.Type == "subscribe":
			c.subscribe(m)
		case m.Type == "unsubscribe":
			c.unsubscribe(m)
		default:
			c.queue(errorFrame{Type: "error", Code: "bad_message", Message: fmt.Sprintf("unknown message type %q", m.Type)})
		}
	}
}

func (c *wsConn) subscribe(m clientMsg) {
	run, err := c.cfg.Runs.Get(m.Run)
	if err != nil {
		if c.preset != nil {
			c.closeWith(CloseRunNotFound, "run not found")
			return
		}
		c.queue(errorFrame{Type: "error", Code: "run_not_found", Message: err.Error(), Run: m.Run, Step: m.Step})
		return
	}
	sub := &wsSub{run: m.Run, step: m.Step, pos: map[string]int64{}, ended: map[string]bool{}, live: map[string]bool{},
		prefix: map[string][]byte{}}
	if sub.all() {
		sub.step = "*"
		sub.events = max(m.EventsAfter, 0)
		for _, s := range run.Steps {
			sub.known = append(sub.known, s.ID)
		}
		for id, seq := range m.Steps {
			sub.pos[id] = max(seq, 0)
		}
	} else {
		sub.pos[m.Step] = max(m.AfterSeq, 0)
	}
	c.mu.Lock()
	kept := c.subs[:0]
	for _, s := range c.subs {
		if s.run != sub.run || s.step != sub.step {
			kept = append(kept, s)
		}
	}
	c.subs = append(kept, sub)
	if c.watching[m.Run] == nil {
		c.watching[m.Run] = c.cfg.Logs.Notify(m.Run, c.wake)
	}
	c.mu.Unlock()
	c.poke()
}

func (c *wsConn) unsubscribe(m clientMsg) {
	step := m.Step
	if step == "" {
		step = "*"
	}
	c.mu.Lock()
	kept := c.subs[:0]
	for _, s := range c.subs {
		if s.run != m.Run || s.step != step {
			kept = append(kept, s)
		}
	}
	c.subs = kept
	c.mu.Unlock()
}

var errDone = errors.New("connection done")

func (c *wsConn) write(b []byte) error {
	c.ws.SetWriteDeadline(time.Now().Add(c.cfg.WriteWait))
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// writeLoop is the connection's only writer.
func (c *wsConn) writeLoop() {
	defer func() {
		c.mu.Lock()
		code, text := c.closeCode, c.closeText
		c.mu.Unlock()
		if code != 0 {
			c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
		}
	}()
	ringLines, _ := c.cfg.Logs.Limits()
	hello, _ := json.Marshal(helloFrame{Type: "hello", V: 1, ServerTime: time.Now().UTC(), HeartbeatMS: c.cfg.Heartbeat.Milliseconds(),
		Limits: helloLimits{MaxLine: logstream.MaxLine, MaxBatchBytes: maxBatchBytes, RingLines: ringLines}})
	if c.write(hello) != nil {
		return
	}
	hb := time.NewTicker(c.cfg.Heartbeat)
	defer hb.Stop()
	ping := time.NewTicker(pingPeriod)
	defer ping.Stop()
	for {
		c.mu.Lock()
		out := c.outbox
		c.outbox = nil
		c.mu.Unlock()
		for _, b := range out {
			if c.write(b) != nil {
				return
			}
		}
		sent, err := c.pass()
		if err != nil {
			return
		}
		if sent {
			continue
		}
		select {
		case <-c.ctx.Done():
			return
		case <-c.wake:
			if d := frameGap() - time.Since(c.lastLines); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-c.ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
		case <-hb.C:
			if c.heartbeat() != nil {
				return
			}
		case <-ping.C:
			if c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.WriteWait)) != nil {
				return
			}
		}
	}
}

// pass sends at most one frame per step of every subscription (round robin, so one busy step
// cannot starve the others) plus the events that are due. It reports whether it sent anything.
func (c *wsConn) pass() (bool, error) {
	c.mu.Lock()
	subs := append([]*wsSub(nil), c.subs...)
	c.mu.Unlock()
	sent := false
	for _, sub := range subs {
		if c.ctx.Err() != nil {
			return sent, errDone
		}
		for _, id := range c.stepsOf(sub) {
			s, err := c.sendStep(sub, id)
			sent = sent || s
			if err != nil {
				return sent, err
			}
		}
		if sub.all() {
			s, err := c.sendEvents(sub)
			sent = sent || s
			if err != nil {
				return sent, err
			}
		}
	}
	return sent, nil
}

func (c *wsConn) stepsOf(sub *wsSub) []string {
	if !sub.all() {
		return []string{sub.step}
	}
	seen := map[string]bool{}
	var ids []string
	for _, id := range append(append([]string(nil), sub.known...), c.cfg.Logs.Steps(sub.run)...) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

type gapFrame struct {
	Type string `json:"type"`
	Run  string `json:"run"`
	Step string `json:"step"`
	logstream.Gap
}

type stepEndFrame struct {
	Type string `json:"type"`
	Run  string `json:"run"`
	Step string `json:"step"`
	logstream.End
}

func (c *wsConn) sendStep(sub *wsSub, id string) (bool, error) {
	if sub.ended[id] {
		return false, nil
	}
	after := sub.pos[id]
	prefix := sub.prefix[id]
	if prefix == nil {
		prefix = linesPrefix(sub.run, id)
		sub.prefix[id] = prefix
	}
	// Frame buffers come from a pool, so idle viewers hold none. The lines are copied into the
	// frame while the store guarantees them (ReadTo): the store reuses push bodies' memory.
	bp := framePool.Get().(*[]byte)
	frame := (*bp)[:0]
	ch, err := c.cfg.Logs.ReadTo(c.ctx, sub.run, id, after, maxBatchBytes, func(part []logstream.Record) {
		if len(frame) == 0 {
			frame = append(frame, prefix...)
		} else {
			frame = append(frame, ',')
		}
		frame = appendRecords(frame, part)
	})
	defer func() {
		if cap(frame) <= 2*maxBatchBytes { // a frame of one giant line does not go back
			*bp = frame[:0]
			framePool.Put(bp)
		}
	}()
	if errors.Is(err, logstream.ErrNoStep) {
		return false, nil
	}
	if err != nil {
		if c.ctx.Err() != nil {
			return false, errDone
		}
		c.cfg.Log.Warn("read step log", "run_id", sub.run, "step", id, "err", err)
		return false, nil
	}
	if ch.FromSpool && sub.live[id] && c.cfg.Logs.StepEnd(sub.run, id) == nil {
		// The viewer kept up once and has now fallen behind the in-memory window of a running
		// step: it is not reading fast enough. It reconnects and resumes from its last seq.
		c.closeWith(CloseSlowViewer, "slow viewer")
		return false, errDone
	}
	sent := false
	if ch.Gap != nil {
		if err := c.write(mustJSON(gapFrame{Type: "gap", Run: sub.run, Step: id, Gap: *ch.Gap})); err != nil {
			return false, err
		}
		sent = true
	}
	if len(frame) > 0 {
		frame = append(frame, ']', '}')
		if err := c.write(frame); err != nil {
			return false, err
		}
		c.lastLines = time.Now()
		sent = true
	}
	next := ch.Next(after)
	sub.pos[id] = next
	if next >= ch.Head {
		sub.live[id] = true
	}
	if ch.End != nil {
		if err := c.write(mustJSON(stepEndFrame{Type: "step_end", Run: sub.run, Step: id, End: *ch.End})); err != nil {
			return false, err
		}
		sub.ended[id] = true
		sent = true
	}
	return sent, nil
}

type eventFrame struct {
	Type     string `json:"type"`
	Run      string `json:"run"`
	Step     string `json:"step,omitempty"`
	Seq      int64  `json:"seq"`
	TS       string `json:"ts"`
	Status   string `json:"status,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Message  string `json:"message,omitempty"`
	Data     any    `json:"data,omitempty"`
}

func (c *wsConn) sendEvents(sub *wsSub) (bool, error) {
	sent := false
	for _, ev := range c.cfg.Logs.Events(sub.run, sub.events) {
		if ev.Type == logstream.EventStep && ev.Step != "" && terminalStatus(ev.Status) && !sub.ended[ev.Step] {
			// A step's terminal event follows its last line: hold it while this viewer has not
			// read the step's log to the end.
			if e := c.cfg.Logs.StepEnd(sub.run, ev.Step); e != nil || c.cfg.Logs.LastSeq(sub.run, ev.Step) > sub.pos[ev.Step] {
				return sent, nil
			}
		}
		f := eventFrame{Type: ev.Type, Run: sub.run, Step: ev.Step, Seq: ev.Seq, TS: ev.TS.UTC().Format(time.RFC3339Nano),
			Status: ev.Status, ExitCode: ev.ExitCode, Message: ev.Message, Data: ev.Data}
		if err := c.write(mustJSON(f)); err != nil {
			return sent, err
		}
		sent = true
		sub.events = ev.Seq
		if ev.Type == logstream.EventRun && terminalStatus(ev.Status) && c.closeOnRunEnd {
			c.closeWith(websocket.CloseNormalClosure, "run "+ev.Status)
			return sent, errDone
		}
	}
	return sent, nil
}

func terminalStatus(s string) bool { return runs.Terminal(s) }

// Frames are structs so "type" always comes first: a client can dispatch on the first member.
type helloFrame struct {
	Type        string      `json:"type"`
	V           int         `json:"v"`
	ServerTime  time.Time   `json:"server_time"`
	HeartbeatMS int64       `json:"heartbeat_ms"`
	Limits      helloLimits `json:"limits"`
}

type helloLimits struct {
	MaxLine       int `json:"max_line"`
	MaxBatchBytes int `json:"max_batch_bytes"`
	RingLines     int `json:"ring_lines"`
}

type heartbeatFrame struct {
	Type  string           `json:"type"`
	Run   string           `json:"run,omitempty"`
	TS    time.Time        `json:"ts"`
	Steps map[string]int64 `json:"steps"`
}

// heartbeat tells the viewer the last seq the server holds for every subscribed step, so it can
// notice a missed tail.
func (c *wsConn) heartbeat() error {
	c.mu.Lock()
	subs := append([]*wsSub(nil), c.subs...)
	c.mu.Unlock()
	perRun := map[string]map[string]int64{}
	for _, sub := range subs {
		m := perRun[sub.run]
		if m == nil {
			m = map[string]int64{}
			perRun[sub.run] = m
		}
		for _, id := range c.stepsOf(sub) {
			m[id] = c.cfg.Logs.LastSeq(sub.run, id)
		}
	}
	now := time.Now().UTC()
	if len(perRun) == 0 {
		return c.write(mustJSON(heartbeatFrame{Type: "heartbeat", TS: now, Steps: map[string]int64{}}))
	}
	for run, steps := range perRun {
		if err := c.write(mustJSON(heartbeatFrame{Type: "heartbeat", Run: run, TS: now, Steps: steps})); err != nil {
			return err
		}
	}
	return nil
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// linesPrefix is the start of a step's lines frames, up to the opening bracket of "lines".
func linesPrefix(run, step string) []byte {
	b := append([]byte(`{"type":"lines","run":`), mustJSON(run)...)
	b = append(b, `,"step":`...)
	b = append(b, mustJSON(step)...)
	return append(b, `,"lines":[`...)
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, maxBatchBytes+4096); return &b }}

// appendRecords appends the records' stored encodings to b, separated by commas: a lines frame is
// the line prefix, these, and "]}"; lines are never re-encoded per viewer.
func appendRecords(b []byte, recs []logstream.Record) []byte {
	for i, r := range recs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r.JSON...)
	}
	return b
}
