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
	"time"

	"github.com/kfbridge/kfbridge/logstream"
)

// Push timing. The pusher sends whatever is readable as soon as the previous request returns, so
// batches grow with the output rate and an idle step's line leaves at once (no timer delay).
const (
	pushTimeout    = 10 * time.Second       // one request
	pushBackoffMin = 100 * time.Millisecond // first retry after a failure
	pushBackoffMax = 5 * time.Second
	pushMaxBatch   = 256 << 10 // bytes of NDJSON per request
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
	buf    []byte // read buffer of the run goroutine

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
	return &pusher{url: u + "/lines", endURL: u + "/end", token: token, src: src, file: file,
		client: &http.Client{Timeout: pushTimeout}, wake: src.subscribe(),
		closing: make(chan struct{}), done: make(chan struct{}), progress: time.Now()}
}

// run sends lines until ctx is done, or finish was called and the service holds every line and
// the end record.
func (p *pusher) run(ctx context.Context) {
	defer close(p.done)
	backoff := pushBackoffMin
	var nextSeq, nextOff int64 = 1, 0 // where the next batch starts in log.ndjson, if known
	closing := p.closing
	fail := func(err error) bool {
		p.mu.Lock()
		p.lastErr = err
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, pushBackoffMax)
		return true
	}
	for {
		p.mu.Lock()
		acked, end, endSent := p.acked, p.end, p.endSent
		p.mu.Unlock()
		flushedSeq, flushedOff := p.src.flushed()
		if acked >= flushedSeq {
			if end != nil && acked >= end.FinalSeq {
				if endSent {
					return
				}
				if err := p.sendEnd(ctx, *end); err != nil {
					if !fail(err) {
						return
					}
					continue
				}
				p.mu.Lock()
				p.endSent, p.lastErr, p.progress = true, nil, time.Now()
				p.mu.Unlock()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			case <-closing:
				closing = nil
			}
			continue
		}
		if nextSeq != acked+1 {
			// The service holds something else than we assumed (it restarted, or a retry): find
			// acked+1 in the file through the index.
			nextSeq, nextOff = p.src.offsetOf(acked + 1)
		}
		body, bodyOff, lastSeq, err := p.read(nextSeq, nextOff, acked, flushedOff)
		if err != nil {
			if !fail(err) {
				return
			}
			continue
		}
		last, err := p.send(ctx, body)
		if err != nil {
			if !fail(err) {
				return
			}
			continue
		}
		backoff = pushBackoffMin
		p.mu.Lock()
		p.acked, p.lastErr, p.progress = last, nil, time.Now()
		p.mu.Unlock()
		if last == lastSeq {
			nextSeq, nextOff = lastSeq+1, bodyOff+int64(len(body))
		}
	}
}

// read returns the NDJSON of lines after acked, its offset in the file and its last seq. The scan
// starts at line first (offset off); the batch holds up to pushMaxBatch bytes (at least one line)
// of the readable size end.
func (p *pusher) read(first, off, acked, end int64) ([]byte, int64, int64, error) {
	n := end - off
	if n > pushMaxBatch {
		n = pushMaxBatch
	}
	for {
		// The buffer is reused: send is done with a batch before the next read.
		if int64(cap(p.buf)) < n {
			p.buf = make([]byte, n)
		}
		buf := p.buf[:n]
		if _, err := p.file.ReadAt(buf, off); err != nil && err != io.EOF {
			return nil, 0, 0, fmt.Errorf("read log spool: %w", err)
		}
		// Skip lines the service already holds (only after a resume from an index entry).
		seq := first
		start := 0
		for seq <= acked {
			i := bytes.IndexByte(buf[start:], '\n')
			if i < 0 {
				break
			}
			start += i + 1
			seq++
		}
		cut := bytes.LastIndexByte(buf, '\n')
		if seq > acked && cut >= start {
			body := buf[start : cut+1]
			return body, off + int64(start), seq - 1 + int64(bytes.Count(body, []byte{'\n'})), nil
		}
		if off+n >= end {
			return nil, 0, 0, fmt.Errorf("read log spool: no complete line after seq %d", acked)
		}
		// A line (or the lines to skip) is longer than the window: widen it.
		n = min(n*2, end-off)
	}
}

func (p *pusher) post(ctx context.Context, u, ctype string, body []byte) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
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
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("push lines: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

func (p *pusher) send(ctx context.Context, body []byte) (int64, error) {
	resp, err := p.post(ctx, p.url, "application/x-ndjson", body)
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
	_, err := p.post(ctx, p.endURL, "application/json", b)
	return err
}

// healthy reports whether the service is keeping up: no error since the last success, and either
// everything flushed is acknowledged or a request succeeded within pushStall.
func (p *pusher) healthy() bool {
	flushedSeq, _ := p.src.flushed()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr == nil && (p.acked >= flushedSeq || time.Since(p.progress) < pushStall)
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
