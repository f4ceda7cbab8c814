package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// wsFrame mirrors the server's websocket frames.
type wsFrame struct {
	Type     string           `json:"type"`
	Step     string           `json:"step"`
	Lines    []logstream.Line `json:"lines"`
	Status   string           `json:"status"`
	ExitCode *int             `json:"exit_code"`
	Message  string           `json:"message"`
	Seq      int64            `json:"seq"`
}

// follow streams a run's frames to fn until the run ends. After a dropped connection it reconnects
// and skips what it has already seen (per-step line seqs and event seqs), so fn never sees a
// duplicate. It returns the run's final status.
func (c *client) follow(ctx context.Context, runID string, fn func(wsFrame)) (string, error) {
	u, err := url.Parse(c.base + "/api/v1/runs/" + url.PathEscape(runID) + "/logs")
	if err != nil {
		return "", err
	}
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	hdr := http.Header{"Authorization": {"Bearer " + c.token}}
	seen := map[string]int64{}
	var lastEvent int64
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		conn, resp, err := websocket.DefaultDialer.DialContext(ctx, u.String(), hdr)
		if err != nil {
			if resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 {
				return "", fmt.Errorf("follow run %s: %s", runID, resp.Status)
			}
			if attempt >= 20 || ctx.Err() != nil {
				return "", fmt.Errorf("follow run %s: %w", runID, err)
			}
			time.Sleep(backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		final, err := func() (string, error) {
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			defer stop()
			for {
				var f wsFrame
				if err := conn.ReadJSON(&f); err != nil {
					return "", err
				}
				backoff = 100 * time.Millisecond
				switch f.Type {
				case "lines":
					var fresh []logstream.Line
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
				case "hello":
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
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code == websocket.CloseNormalClosure {
			// The server closes normally only after the run's final event, which we returned on.
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}
