package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/kfbridge/kfbridge/logstream"
)

// Push timing. The pusher sends whatever is queued as soon as the previous request returns, so
// batches grow with the output rate and an idle step's line leaves at once (no timer delay).
const (
	pushTimeout    = 10 * time.Second       // one request
	pushBackoffMin = 100 * time.Millisecond // first retry after a failure
	pushBackoffMax = 5 * time.Second
	pushMaxBatch   = 256 << 10 // bytes of NDJSON per request
	// pushMaxQueue bounds the lines kept for a service that does not answer; past it the oldest
	// unsent lines are dropped from the push path (they stay in stdout and the archive, which the
	// service falls back to).
	pushMaxQueue = 1 << 20
)

// pusher sends a step's lines to the kfbridge service. Queuing never blocks the caller: the step's
// output path must not wait on the network.
type pusher struct {
	url    string // …/api/v1/runs/{run}/steps/{step}/lines
	token  string
	client *http.Client

	mu      sync.Mutex
	queue   []logstream.Line // lines not yet acknowledged, in seq order
	acked   int64            // highest seq the service holds
	wake    chan struct{}
	closed  bool
	dropped int64
	lastErr error
}

func newPusher(base, runID, stepID, token string) *pusher {
	u := strings.TrimRight(base, "/") + "/api/v1/runs/" + url.PathEscape(runID) + "/steps/" + url.PathEscape(stepID) + "/lines"
	return &pusher{url: u, token: token, client: &http.Client{Timeout: pushTimeout}, wake: make(chan struct{}, 1)}
}

// add queues a line for sending.
func (p *pusher) add(l logstream.Line) {
	p.mu.Lock()
	if len(p.queue) >= pushMaxQueue {
		p.queue = p.queue[1:]
		p.dropped++
	}
	p.queue = append(p.queue, l)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run sends queued lines until ctx is done or close was called and everything is acknowledged.
func (p *pusher) run(ctx context.Context) {
	backoff := pushBackoffMin
	for {
		p.mu.Lock()
		batch, n := p.batch()
		closed := p.closed
		p.mu.Unlock()
		if n == 0 {
			if closed {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			}
			continue
		}
		last, err := p.send(ctx, batch)
		if err != nil {
			p.mu.Lock()
			p.lastErr = err
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, pushBackoffMax)
			continue
		}
		if !p.ack(last) {
			// The service holds less than the head of our queue (it lost lines we had already
			// dropped): it cannot make progress from this queue. Back off rather than spin.
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, pushBackoffMax)
			continue
		}
		backoff = pushBackoffMin
	}
}

// batch encodes the head of the queue. The caller holds p.mu.
func (p *pusher) batch() ([]byte, int) {
	var buf bytes.Buffer
	n := 0
	for _, l := range p.queue {
		if buf.Len() >= pushMaxBatch {
			break
		}
		writeNDJSON(&buf, l)
		n++
	}
	return buf.Bytes(), n
}

// ack drops every queued line the service holds. If the service holds less than we sent (it
// restarted), the queue still has those lines only if they were never acknowledged before; lines
// acknowledged earlier are gone from the queue and come back to the service from the archive.
func (p *pusher) ack(last int64) (progress bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if last > p.acked {
		p.acked = last
	}
	i := 0
	for i < len(p.queue) && p.queue[i].Seq <= last {
		i++
	}
	p.queue = p.queue[i:]
	if i == 0 && len(p.queue) > 0 {
		p.lastErr = fmt.Errorf("push lines: service holds up to seq %d, queue starts at %d", last, p.queue[0].Seq)
		return false
	}
	p.lastErr = nil
	return true
}

func (p *pusher) send(ctx context.Context, body []byte) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if p.token != "" {
		req.Header.Set("Authorization", "Bearer "+p.token)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("push lines: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	var ack struct {
		LastSeq int64 `json:"last_seq"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ack); err != nil {
		return 0, fmt.Errorf("push lines: decode answer: %w", err)
	}
	return ack.LastSeq, nil
}

// close stops accepting lines and waits up to grace for the queue to drain. It reports the lines
// the service never acknowledged.
func (p *pusher) close(done <-chan struct{}, grace time.Duration) (unsent int, err error) {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	select {
	case <-done:
	case <-time.After(grace):
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue) + int(p.dropped), p.lastErr
}

func writeNDJSON(w io.Writer, l logstream.Line) {
	b, _ := json.Marshal(l)
	b = append(b, '\n')
	w.Write(b)
}
