package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kfbridge/kfbridge/logstream"
)

// Push timing. The pusher sends whatever is readable as soon as a request slot is free, so batches
// grow with the output rate and an idle step's line leaves at once (no timer delay).
const (
	pushTimeout    = 10 * time.Second       // one request
	pushBackoffMin = 100 * time.Millisecond // first retry after a failure
	pushBackoffMax = 5 * time.Second
	pushMaxBatch   = 512 << 10 // bytes of NDJSON per request
	// pushWindow is how many requests may be in flight at once, each on its own connection: with
	// one, the step's output waits a whole round trip (service validation, spool write, answer)
	// per batch; with several, the service validates one batch while it stores the one before,
	// and the runner reads the next. The service stores batches in seq order whatever order
	// they arrive in (logstream.OrderWait).
	pushWindow = 3
	// pushPipelineMin is how much unsent output opens a further request while one is in flight:
	// a step printing at a moderate rate keeps to one request at a time (fewer, fuller batches),
	// a flood of output uses the whole window.
	pushPipelineMin = 64 << 10
	// mapSize is how much of log.ndjson the pusher maps: more than a step at the log limit
	// writes (1 GiB of text is about 1.3 GiB of NDJSON). Past it, batches are read with ReadAt.
	mapSize = 4 << 30
	// pushStall is how long a finished step keeps waiting for a service that makes no progress.
	pushStall = 2 * time.Second
)

// pusher sends a step's lines to the kfbridge service, reading them from the sink's log.ndjson:
// that file is the spool, so the runner can resend from any seq the service asks for (after the
// service restarted, say) without holding lines in memory. Nothing in the step's output path
// waits on the network.
type pusher struct {
	url    string // …/api/v1/runs/{run}/steps/{step}/lines
	endURL string // …/api/v1/runs/{run}/steps/{step}/end
	token  string
	client *http.Client
	src    *sink
	file   *os.File // log.ndjson, read with ReadAt
	wake   <-chan struct{}
	bufs   [][]byte // free read buffers of the run goroutine, one per request in flight
	mapped []byte   // log.ndjson mapped read-only (nil: read with ReadAt), used by run only
	// lengthRequired is set once something between the runner and the service refused a chunked
	// push (411): pushes carry a Content-Length from then on.
	lengthRequired atomic.Bool

	mu       sync.Mutex
	acked    int64 // highest seq the service holds, as it last told us
	end      *logstream.End
	endSent  bool
	lastErr  error
	progress time.Time // last successful request
	closing  chan struct{}
	done     chan struct{}
}

func newPusher(base, runID, stepID, token string, src *sink, file *os.File) *pusher {
	u := strings.TrimRight(base, "/") + "/api/v1/runs/" + url.PathEscape(runID) + "/steps/" + url.PathEscape(stepID)
	// One idle connection per request slot, so a pipelined flood does not open and close
	// connections.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = pushWindow
	return &pusher{url: u + "/lines", endURL: u + "/end", token: token, src: src, file: file,
		client: &http.Client{Timeout: pushTimeout, Transport: tr}, wake: src.subscribe(),
		closing: make(chan struct{}), done: make(chan struct{}), progress: time.Now()}
}

// pushBatch is one request: lines first..last, at offsets off..end of log.ndjson.
type pushBatch struct {
	first, last int64
	off, end    int64
	body        []byte // the NDJSON sent
	buf         []byte // the read buffer holding body, returned to the free list after
}

type pushResult struct {
	b    pushBatch
	last int64 // the service's answer: the highest seq it holds
	err  error
}

// run sends lines until ctx is done, or finish was called and the service holds every line and
// the end record. Up to pushWindow requests are in flight; their answers may come back in any
// order. A failed request is sent again after the backoff, alone, while the others stay in
// flight; an answer below the batch's last line (the service restarted, or a batch waited in vain
// for the one before it) drains the window and starts again from what the service holds.
func (p *pusher) run(ctx context.Context) {
	defer close(p.done)
	p.mapped = mapLog(p.file, mapSize)
	// Unmapped after the drain below (deferred calls run last first): no request still reads it.
	defer func() {
		unmapLog(p.mapped)
		p.mapped = nil
	}()
	results := make(chan pushResult, pushWindow)
	inflight := 0
	defer func() {
		for ; inflight > 0; inflight-- {
			<-results
		}
	}()
	backoff := pushBackoffMin
	// sentSeq/sentOff: the last line handed to a request and the offset after it; valid only
	// while known (after a resync they are looked up from the acked seq through the index).
	var sentSeq, sentOff int64
	known := true
	failed := false  // reading log.ndjson or sending the end failed: drain, back off, resend from acked
	low := int64(-1) // lowest short answer seen while draining (-1: none)
	closing := p.closing
	for {
		p.mu.Lock()
		acked, end, endSent := p.acked, p.end, p.endSent
		p.mu.Unlock()
		if inflight == 0 && (failed || low >= 0) {
			if low >= 0 {
				// Trust the lowest answer: resending lines the service holds is harmless (it
				// ignores them), skipping lines it lost is not.
				p.mu.Lock()
				p.acked = low
				acked = low
				p.mu.Unlock()
				low = -1
			}
			if failed {
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, pushBackoffMax)
				failed = false
			}
			sentSeq, known = acked, false
		}
		flushedSeq, flushedOff := p.src.flushed()
		// Fill the window.
		for !failed && low < 0 && inflight < pushWindow && sentSeq < flushedSeq {
			if !known {
				var first int64
				first, sentOff = p.src.offsetOf(sentSeq + 1)
				b, err := p.read(first, sentOff, sentSeq, flushedSeq, flushedOff)
				if err != nil {
					p.setErr(err)
					failed = true
					break
				}
				known = true
				p.start(ctx, b, results, 0)
				inflight++
				sentSeq, sentOff = b.last, b.end
				continue
			}
			if inflight > 0 && flushedOff-sentOff < pushPipelineMin {
				break
			}
			b, err := p.read(sentSeq+1, sentOff, sentSeq, flushedSeq, flushedOff)
			if err != nil {
				p.setErr(err)
				failed = true
				break
			}
			p.start(ctx, b, results, 0)
			inflight++
			sentSeq, sentOff = b.last, b.end
		}
		if inflight == 0 && !failed && low < 0 && acked >= flushedSeq && end != nil && acked >= end.FinalSeq {
			if endSent {
				return
			}
			if err := p.sendEnd(ctx, *end); err != nil {
				p.setErr(err)
				failed = true
				continue
			}
			p.mu.Lock()
			p.endSent, p.lastErr, p.progress = true, nil, time.Now()
			p.mu.Unlock()
			return
		}
		if inflight == 0 && (failed || low >= 0) {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case r := <-results:
			inflight--
			switch {
			case r.err != nil && low < 0:
				// Send the same batch again after the backoff while the batches after it stay
				// in flight: the service holds those until this one arrives (OrderWait), so one
				// lost request costs one retry, not the window.
				p.setErr(r.err)
				p.start(ctx, r.b, results, backoff)
				inflight++
				backoff = min(backoff*2, pushBackoffMax)
			case r.err != nil:
				p.setErr(r.err)
				p.free(r.b)
			case r.last < r.b.last:
				// The service lacks lines before this batch: it restarted, or the batch waited
				// in vain for one before it. Drain the window and resend from what it holds.
				p.free(r.b)
				if low < 0 || r.last < low {
					low = r.last
				}
			default:
				p.free(r.b)
				backoff = pushBackoffMin
				p.mu.Lock()
				p.acked = max(p.acked, r.last)
				p.lastErr, p.progress = nil, time.Now()
				p.mu.Unlock()
			}
		case <-p.wake:
		case <-closing:
			closing = nil
		}
	}
}

// free returns a batch's read buffer (if it has one: mapped batches do not) to the free list.
func (p *pusher) free(b pushBatch) {
	if b.buf != nil {
		p.bufs = append(p.bufs, b.buf)
	}
}

func (p *pusher) setErr(err error) {
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
}

// start sends batch b in its own goroutine after delay; the result arrives on results (buffered
// for the whole window, so the goroutine never blocks).
func (p *pusher) start(ctx context.Context, b pushBatch, results chan<- pushResult, delay time.Duration) {
	go func() {
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				results <- pushResult{b: b, err: ctx.Err()}
				return
			case <-t.C:
			}
		}
		last, err := p.send(ctx, b.body)
		results <- pushResult{b: b, last: last, err: err}
	}()
}

// read returns the batch of lines after skip, starting the scan at line first (offset off): up to
// pushMaxBatch bytes (at least one line) of the readable size end, which holds lines up to
// endSeq.
func (p *pusher) read(first, off, skip, endSeq, end int64) (pushBatch, error) {
	if first == skip+1 && end <= int64(len(p.mapped)) {
		// A mapped log and no line to skip: the batch's bounds come from what the sink knows
		// (where the flushed lines end, and its offset index), so the pusher never reads the
		// lines it sends — only the kernel does, copying them to the socket.
		if end-off <= pushMaxBatch {
			return pushBatch{first: first, last: endSeq, off: off, end: end, body: p.mapped[off:end:end]}, nil
		}
		if seq, cut := p.src.entryBefore(off + pushMaxBatch); cut > off {
			return pushBatch{first: first, last: seq - 1, off: off, end: cut, body: p.mapped[off:cut:cut]}, nil
		}
	}
	n := end - off
	if n > pushMaxBatch {
		n = pushMaxBatch
	}
	var buf []byte
	if end > int64(len(p.mapped)) {
		if k := len(p.bufs); k > 0 {
			buf, p.bufs = p.bufs[k-1], p.bufs[:k-1]
		}
	}
	for {
		if end <= int64(len(p.mapped)) {
			// The written part of a mapped log.ndjson: no copy (buf stays nil, nothing to
			// return to the free list).
			buf = p.mapped[off : off+n : off+n]
		} else {
			if int64(cap(buf)) < n {
				buf = make([]byte, n)
			}
			buf = buf[:n]
			if _, err := p.file.ReadAt(buf, off); err != nil && err != io.EOF {
				p.bufs = append(p.bufs, buf)
				return pushBatch{}, fmt.Errorf("read log spool: %w", err)
			}
		}
		// Skip lines the service already holds (only after a resume from an index entry).
		seq := first
		start := 0
		for seq <= skip {
			i := bytes.IndexByte(buf[start:], '\n')
			if i < 0 {
				break
			}
			start += i + 1
			seq++
		}
		cut := bytes.LastIndexByte(buf, '\n')
		if seq > skip && cut >= start {
			body := buf[start : cut+1]
			last := seq - 1 + int64(bytes.Count(body, []byte{'\n'}))
			b := pushBatch{first: seq, last: last, off: off + int64(start), end: off + int64(cut+1), body: body}
			if end > int64(len(p.mapped)) {
				b.buf = buf
			}
			return b, nil
		}
		if off+n >= end {
			if end > int64(len(p.mapped)) {
				p.bufs = append(p.bufs, buf)
			}
			return pushBatch{}, fmt.Errorf("read log spool: no complete line after seq %d", skip)
		}
		// A line (or the lines to skip) is longer than the window: widen it.
		n = min(n*2, end-off)
	}
}

// post sends body to u. chunked sends it with Transfer-Encoding: chunked instead of a
// Content-Length: net/http then writes the caller's bytes straight to the socket, where with a
// length it copies them through a 32 KiB buffer first. Something in between that insists on a
// length (411) gets one from then on.
func (p *pusher) post(ctx context.Context, u, ctype string, body []byte, chunked bool) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if chunked {
		req.ContentLength = -1
	}
	req.Header.Set("Content-Type", ctype)
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("push lines: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("push lines: read answer: %w", err)
	}
	if resp.StatusCode == http.StatusLengthRequired && chunked {
		p.lengthRequired.Store(true)
		return p.post(ctx, u, ctype, body, false)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("push lines: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

func (p *pusher) send(ctx context.Context, body []byte) (int64, error) {
	resp, err := p.post(ctx, p.url, "application/x-ndjson", body, !p.lengthRequired.Load())
	if err != nil {
		return 0, err
	}
	var ack struct {
		LastSeq int64 `json:"last_seq"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ack); err != nil {
		return 0, fmt.Errorf("push lines: decode answer: %w", err)
	}
	return ack.LastSeq, nil
}

func (p *pusher) sendEnd(ctx context.Context, e logstream.End) error {
	b, _ := json.Marshal(e)
	_, err := p.post(ctx, p.endURL, "application/json", b, false)
	return err
}

// finish hands the pusher the step's end record and waits until the service holds every line and
// the end, giving up once the service has made no progress for pushStall (it is unreachable: the
// log reaches it through the archive) or after grace. It reports how many lines the service does
// not hold.
func (p *pusher) finish(e logstream.End, grace time.Duration) (unsent int64, err error) {
	p.mu.Lock()
	p.end = &e
	p.progress = time.Now()
	p.mu.Unlock()
	close(p.closing)
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
		case <-deadline.C:
		case <-tick.C:
			p.mu.Lock()
			stalled := time.Since(p.progress) > pushStall
			p.mu.Unlock()
			if !stalled {
				continue
			}
		}
		break
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.acked >= e.FinalSeq && p.endSent {
		return 0, nil
	}
	return max(e.FinalSeq-p.acked, 0), p.lastErr
}
