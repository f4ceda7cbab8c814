package logstream

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzParseNDJSON feeds arbitrary push bodies to the service's parser (the fast one-pass path,
// the canonical check and the decoding fallback). It must never panic, and whatever it stores
// must be valid UTF-8 JSON that decodes to a line with the record's seq; a body it reports as
// raw (spooled as it came) must be exactly its records, each followed by a newline.
func FuzzParseNDJSON(f *testing.F) {
	ts := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
	var body []byte
	for i, text := range []string{"plain text long enough for the one-pass path", "tab\there", "quote \" and \\ backslash", "é ünïcode", "\x1b[31mred\x1b[0m"} {
		body = AppendJSON(body, Line{Seq: int64(i + 1), TS: ts, Stream: Stdout, Text: text, Partial: i == 2})
		body = append(body, '\n')
	}
	f.Add(body)
	f.Add([]byte(`{"seq":1,"ts":"2026-12-07T10:00:00Z","stream":"stdout","text":"a` + "\xff" + `b"}` + "\n"))
	f.Add([]byte(`{"seq":07,"ts":"2026-12-07T10:00:00Z","stream":"stdout","text":"leading zero, long enough for the fast path"}`))
	f.Add([]byte(`{"text":"other order","seq":3,"stream":"stderr","ts":"2026-12-07T10:00:00Z"}` + "\r\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		recs, raw, _, err := parseNDJSON(nil, body)
		if err != nil {
			return
		}
		var joined []byte
		for _, rec := range recs {
			if !json.Valid(rec.JSON) || !utf8.Valid(rec.JSON) {
				t.Fatalf("stored invalid JSON %q", rec.JSON)
			}
			l, err := rec.Decode()
			if err != nil || l.Seq != rec.Seq || l.Seq < 1 {
				t.Fatalf("record %q: seq %d, decoded %+v, %v", rec.JSON, rec.Seq, l, err)
			}
			joined = append(append(joined, rec.JSON...), '\n')
		}
		if raw && !bytes.Equal(joined, body) {
			t.Fatalf("raw body %q is not its records %q", body, joined)
		}
	})
}
