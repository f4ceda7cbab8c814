package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/runs"
)

// client talks to a kfbridge server's REST and websocket API; the CLI uses it.
type client struct {
	base  string
	token string
	http  *http.Client
}

func newClient(base, token string) *client {
	return &client{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Timeout: 10 * time.Minute}}
}

// apiError is a problem+json answer.
type apiError struct {
	Status int
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Issues []struct {
		Severity int            `json:"severity"`
		Type     string         `json:"type"`
		Message  string         `json:"message"`
		Data     map[string]any `json:"data"`
	} `json:"issues"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s: %s", e.Status, e.Title, e.Detail)
	for _, is := range e.Issues {
		fmt.Fprintf(&b, "\n  - %s: %s", is.Type, is.Message)
	}
	return b.String()
}

func (c *client) do(ctx context.Context, method, path, ctype string, body io.Reader, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, c.base+path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		ae := &apiError{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode)}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, ae) != nil || ae.Detail == "" {
			ae.Detail = strings.TrimSpace(string(b))
		}
		return ae
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// submitPath submits a file that already lies in the server's workspace.
func (c *client) submitPath(ctx context.Context, opts map[string]any) (*runs.Run, error) {
	b, _ := json.Marshal(opts)
	var r runs.Run
	err := c.do(ctx, http.MethodPost, "/api/v1/runs", "application/json", bytes.NewReader(b), &r)
	return &r, err
}

// submitBundle uploads a tar.gz bundle with the pipeline and its files.
func (c *client) submitBundle(ctx context.Context, opts map[string]any, bundle []byte) (*runs.Run, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	ow, _ := mw.CreateFormField("options")
	json.NewEncoder(ow).Encode(opts)
	bw, _ := mw.CreateFormFile("bundle", "bundle.tar.gz")
	bw.Write(bundle)
	mw.Close()
	var r runs.Run
	err := c.do(ctx, http.MethodPost, "/api/v1/runs", mw.FormDataContentType(), &body, &r)
	return &r, err
}

func (c *client) getRun(ctx context.Context, id string) (*runs.Run, error) {
	var r runs.Run
	err := c.do(ctx, http.MethodGet, "/api/v1/runs/"+url.PathEscape(id), "", nil, &r)
	return &r, err
}

// wsFrame mirrors the server's websocket frames (docs/protocol.md); fields absent from a frame type
// stay zero.
type wsFrame struct {
	Type     string           `json:"type"`
	Run      string           `json:"run"`
	Step     string           `json:"step"`
	Lines    []logstream.Line `json:"-"` // "lines" frames
	Status   string           `json:"status"`
	ExitCode *int             `json:"exit_code"`
	Message  string           `json:"message"`
	Seq      int64            `json:"seq"`
	// step_end ("lines" is a count there, an array in "lines" frames: see readFrame)
	FinalSeq  int64 `json:"final_seq"`
	LineCount int64 `json:"-"`
	Truncated bool  `json:"truncated"`
	// gap
	FromSeq int64  `json:"from_seq"`
	ToSeq   int64  `json:"to_seq"`
	Reason  string `json:"reason"`
	// error
	Code string `json:"code"`
}

// readFrame reads one server frame. The "lines" key holds the lines of a "lines" frame and the
// line count of a "step_end" frame.
func readFrame(conn *websocket.Conn) (wsFrame, error) {
	var f struct {
		wsFrame
		Lines json.RawMessage `json:"lines"`
	}
	if err := conn.ReadJSON(&f); err != nil {
		return wsFrame{}, err
	}
	out := f.wsFrame
	if len(f.Lines) > 0 {
		var err error
		if out.Type == "lines" {
			err = json.Unmarshal(f.Lines, &out.Lines)
		} else {
			err = json.Unmarshal(f.Lines, &out.LineCount)
		}
		if err != nil {
			return out, fmt.Errorf("decode %s frame: %w", out.Type, err)
		}
	}
	return out, nil
}

// followBackoff is the reconnect delay: 100 ms doubling to 10 s, with jitter so clients that lost
// the server together do not come back together.
func followBackoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 7)
	d = min(d, 10*time.Second)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// follow streams a run's frames to fn until the run ends, over the multiplexed websocket. After a
// dropped connection (or a slow-viewer eviction) it reconnects and resubscribes from the last line
// seq of every step and the last event seq, and drops anything at or below them, so fn never sees
// a duplicate or misses a line. It returns the run's final status.
func (c *client) follow(ctx context.Context, runID string, fn func(wsFrame)) (string, error) {
	u, err := url.Parse(c.base + "/api/v1/ws")
	if err != nil {
		return "", err
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	hdr := http.Header{"Authorization": {"Bearer " + c.token}}
	seen := map[string]int64{}
	var lastEvent int64
	failures := 0
	for {
		conn, resp, err := websocket.DefaultDialer.DialContext(ctx, u.String(), hdr)
		if err != nil {
			if resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 {
				return "", fmt.Errorf("follow run %s: %s", runID, resp.Status)
			}
			if failures >= 30 || ctx.Err() != nil {
				return "", fmt.Errorf("follow run %s: %w", runID, err)
			}
			sleepCtx(ctx, followBackoff(failures))
			failures++
			continue
		}
		final, err := func() (string, error) {
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			steps := map[string]int64{}
			for k, v := range seen {
				steps[k] = v
			}
			sub := map[string]any{"type": "subscribe", "run": runID, "step": "*", "events_after": lastEvent, "steps": steps}
			if err := conn.WriteJSON(sub); err != nil {
				return "", err
			}
			for {
				f, err := readFrame(conn)
				if err != nil {
					return "", err
				}
				failures = 0
				switch f.Type {
				case "lines":
					fresh := f.Lines[:0]
					for _, l := range f.Lines {
						if l.Seq > seen[f.Step] {
							fresh = append(fresh, l)
							seen[f.Step] = l.Seq
						}
					}
					if len(fresh) > 0 {
						f.Lines = fresh
						fn(f)
					}
				case "gap":
					if f.ToSeq > seen[f.Step] {
						seen[f.Step] = f.ToSeq
						fn(f)
					}
				case "error":
					if f.Code == "run_not_found" {
						return "", &permanentError{fmt.Errorf("follow run %s: %s", runID, f.Message)}
					}
				case "hello", "heartbeat", "step_end":
					if f.Type == "step_end" {
						fn(f)
					}
				default:
					if f.Seq <= lastEvent {
						continue
					}
					lastEvent = f.Seq
					fn(f)
					if f.Type == logstream.EventRun && runs.Terminal(f.Status) {
						return f.Status, nil
					}
				}
			}
		}()
		if err == nil {
			return final, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		var pe *permanentError
		if errors.As(err, &pe) {
			return "", pe.err
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code == 4001 {
			return "", fmt.Errorf("follow run %s: unauthorized: %s", runID, ce.Text)
		}
		sleepCtx(ctx, followBackoff(failures))
		failures++
	}
}

// permanentError ends a follow without reconnecting.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
