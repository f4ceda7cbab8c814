package handlers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/logstream"
)

// TestPushBodies posts line batches with a Content-Length and chunked, small and larger than the
// first pooled buffer of a chunked body (so it grows), and checks the answers and what the store
// holds; a body over the limit gets 413 and a bad line 400 naming it, and neither stores anything.
func TestPushBodies(t *testing.T) {
	svc := startService(t, serviceOptions{})
	url := svc.URL + "/api/v1/runs/" + testRun + "/steps/" + testStep + "/lines"
	ts := time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC)
	batch := func(from, n int) []byte {
		var b []byte
		for i := from; i < from+n; i++ {
			b = logstream.AppendJSON(b, logstream.Line{Seq: int64(i), TS: ts, Stream: logstream.Stdout, Text: fmt.Sprintf("line %d %s", i, strings.Repeat("x", 200))})
			b = append(b, '\n')
		}
		return b
	}
	post := func(body []byte, chunked bool) (int, string) {
		t.Helper()
		var r io.Reader = bytes.NewReader(body)
		if chunked {
			r = io.MultiReader(r) // hides the length: net/http sends it chunked
		}
		req, _ := http.NewRequest(http.MethodPost, url, r)
		req.Header.Set("Authorization", "Bearer "+pushToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK {
			var ack struct {
				LastSeq int64 `json:"last_seq"`
			}
			json.Unmarshal(b, &ack)
			return resp.StatusCode, fmt.Sprint(ack.LastSeq)
		}
		return resp.StatusCode, string(b)
	}
	seq := 1
	for _, c := range []struct {
		n       int
		chunked bool
	}{{10, false}, {10, true}, {3000, true}, {3000, false}, {1, true}} { // 3,000 lines: ~700 KiB
		body := batch(seq, c.n)
		code, last := post(body, c.chunked)
		seq += c.n
		if code != http.StatusOK || last != fmt.Sprint(seq-1) {
			t.Fatalf("%d lines (chunked %v, %d bytes): %d %s", c.n, c.chunked, len(body), code, last)
		}
	}
	if got := svc.Logs.LastSeq(testRun, testStep); got != int64(seq-1) {
		t.Fatalf("store holds lines up to %d, want %d", got, seq-1)
	}
	for _, at := range []int{0, 19, 3019, 6019} {
		l := svc.Logs.Lines(testRun, testStep, int64(at), 1)
		if len(l) != 1 || l[0].Seq != int64(at+1) || !strings.HasPrefix(l[0].Text, fmt.Sprintf("line %d ", at+1)) {
			t.Fatalf("line %d: %+v", at+1, l)
		}
	}
	for _, chunked := range []bool{false, true} {
		if code, msg := post(batch(seq, 20000), chunked); code != http.StatusRequestEntityTooLarge {
			t.Fatalf("a 4+ MiB body (chunked %v): %d %s", chunked, code, msg)
		}
		bad := append(batch(seq, 2), "not json\n"...)
		if code, msg := post(bad, chunked); code != http.StatusBadRequest || !strings.Contains(msg, "line 3") {
			t.Fatalf("a bad line (chunked %v): %d %s", chunked, code, msg)
		}
	}
	if got := svc.Logs.LastSeq(testRun, testStep); got != int64(seq-1) {
		t.Fatalf("refused bodies stored lines: last seq %d, want %d", got, seq-1)
	}
}
