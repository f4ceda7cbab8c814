package runner

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/logstream"
)

func decodeAll(t *testing.T, nd []byte) []logstream.Line {
	t.Helper()
	var out []logstream.Line
	for _, l := range bytes.Split(bytes.TrimSuffix(nd, []byte{'\n'}), []byte{'\n'}) {
		var x logstream.Line
		if err := json.Unmarshal(l, &x); err != nil {
			t.Fatalf("log.ndjson line %q: %v", l, err)
		}
		out = append(out, x)
	}
	return out
}

// Ensure lines are numbered from 1 without holes, lines over 64 KiB are split into partial
// pieces, a lone \r stays in the line while \r\n ends it, and invalid UTF-8 becomes U+FFFD in the
// numbered lines while log.txt keeps the raw bytes.
func TestSinkNumbersSplitsAndKeepsRawBytes(t *testing.T) {
	var stdout, txt, nd bytes.Buffer
	s := newSink(&stdout, nil, &txt, &nd, time.Now, 0)
	long := strings.Repeat("a", maxLine+10)
	in := "first\r\n" + "progress 10%\rprogress 100%\n" + long + "\n" + "bad \xff\xfe utf8\n" + "no newline at end"
	if err := s.pump(logstream.Stdout, strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	s.flush()
	lines := decodeAll(t, nd.Bytes())
	want := []struct {
		text    string
		partial bool
	}{
		{"first", false}, {"progress 10%\rprogress 100%", false}, {long[:maxLine], true}, {long[maxLine:], false},
		{"bad \ufffd\ufffd utf8", false}, {"no newline at end", false},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d: %+v", len(lines), len(want), lines)
	}
	for i, w := range want {
		if lines[i].Seq != int64(i+1) || lines[i].Text != w.text || lines[i].Partial != w.partial || lines[i].Stream != logstream.Stdout {
			t.Errorf("line %d = seq %d %q partial %v", i+1, lines[i].Seq, limit(lines[i].Text), lines[i].Partial)
		}
	}
	wantTxt := "first\nprogress 10%\rprogress 100%\n" + long + "\nbad \xff\xfe utf8\nno newline at end\n"
	if txt.String() != wantTxt {
		t.Errorf("log.txt differs from the raw output")
	}
	if stdout.String() != wantTxt {
		t.Errorf("stdout differs from the raw output")
	}
	e := s.end(0)
	if e.FinalSeq != 6 || e.Bytes != int64(len(wantTxt)) || e.SHA256 == "" || e.Truncated {
		t.Errorf("end = %+v", e)
	}
}

func limit(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Ensure a step past the log limit keeps running with its output on stdout, while the archive
// gets one system line saying so and the end record is marked truncated.
func TestSinkTruncatesPastLimit(t *testing.T) {
	var stdout, txt, nd bytes.Buffer
	s := newSink(&stdout, nil, &txt, &nd, time.Now, 100)
	var in strings.Builder
	for i := 0; i < 50; i++ {
		in.WriteString("0123456789\n")
	}
	s.pump(logstream.Stdout, strings.NewReader(in.String()))
	s.system("finished")
	lines := decodeAll(t, nd.Bytes())
	last := lines[len(lines)-1]
	trunc := lines[len(lines)-2]
	if last.Text != "finished" || !strings.Contains(trunc.Text, "log truncated") || trunc.Stream != logstream.System {
		t.Fatalf("last lines %+v", lines[len(lines)-3:])
	}
	for i, l := range lines {
		if l.Seq != int64(i+1) {
			t.Fatalf("hole at %d", i)
		}
	}
	if e := s.end(0); !e.Truncated || e.FinalSeq != int64(len(lines)) {
		t.Fatalf("end %+v", e)
	}
	if strings.Count(stdout.String(), "0123456789\n") != 50 {
		t.Fatal("stdout lost lines past the limit")
	}
}
