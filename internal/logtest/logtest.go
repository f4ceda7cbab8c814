// Package logtest holds what the live-log benchmarks of several packages share: a lean websocket
// viewer and the raw loopback TCP baseline they are measured against.
package logtest

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// LeanFollow reads lines frames after seq last until step_end, checking that seqs arrive in
// order without holes by scanning the frames rather than decoding them (a browser's cost is not
// the service's). It returns the last seq and whether the step ended (or a hole was seen: the
// caller's count then falls short).
func LeanFollow(c *websocket.Conn, last int64) (int64, bool) {
	var buf bytes.Buffer // reused for every frame, as a browser's reader would
	for {
		_, r, err := c.NextReader()
		if err != nil {
			return last, false
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return last, false
		}
		msg := buf.Bytes()
		if bytes.HasPrefix(msg, []byte(`{"type":"step_end"`)) {
			return last, true
		}
		for rest := msg; ; {
			i := bytes.Index(rest, []byte(`{"seq":`))
			if i < 0 {
				break
			}
			rest = rest[i+7:]
			// The seq's digits, read in place (no string, no allocation per line).
			seq := int64(0)
			for len(rest) > 0 && rest[0]-'0' <= 9 {
				seq = seq*10 + int64(rest[0]-'0')
				rest = rest[1:]
			}
			if seq <= last {
				continue
			}
			if seq != last+1 {
				return last, true
			}
			last = seq
		}
	}
}

// RawTCP sends data in chunks of chunk bytes over one loopback TCP connection to a reader that
// counts its lines, and returns the time until the reader has all n lines: the physical limit
// the log path is compared with.
func RawTCP(tb testing.TB, data []byte, chunk, n int) time.Duration {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	got := make(chan time.Time, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- time.Now()
			return
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		lines := 0
		for lines < n {
			k, err := c.Read(buf)
			lines += bytes.Count(buf[:k], []byte{'\n'})
			if err != nil {
				break
			}
		}
		got <- time.Now()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	for off := 0; off < len(data); off += chunk {
		if _, err := c.Write(data[off:min(off+chunk, len(data))]); err != nil {
			tb.Fatal(err)
		}
	}
	return (<-got).Sub(start)
}
