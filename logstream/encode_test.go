package logstream

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// refAppendString is appendString as it was before its eight-bytes-at-a-time fast path: one
// byte at a time. It is the reference the fast encoder must match byte for byte.
func refAppendString(dst []byte, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// checkAppendString compares both forms of appendString with the reference for s.
func checkAppendString(t *testing.T, s []byte) {
	t.Helper()
	want := refAppendString([]byte("x"), s)
	if got := appendString([]byte("x"), s); !bytes.Equal(got, want) {
		t.Fatalf("appendString(%q) []byte form\n got %q\nwant %q", s, got, want)
	}
	if got := appendString([]byte("x"), string(s)); !bytes.Equal(got, want) {
		t.Fatalf("appendString(%q) string form\n got %q\nwant %q", s, got, want)
	}
}

// pieces are what text is made of, plain and otherwise: every byte class the encoder treats
// differently, and UTF-8 sequences valid and not (truncated, overlong, surrogates, too large,
// stray continuation bytes).
var pieces = []string{
	"a", "Z", "0", " ", "~", "\x7f", "/", "<", "&",
	"\x00", "\x01", "\x08", "\t", "\n", "\x0c", "\r", "\x1b", "\x1f", `"`, `\`,
	"é", "€", "😀", "\u2028", "\ufffd", "\U0010ffff",
	"\x80", "\xbf", "\xc0", "\xc1\xbf", "\xc3", "\xe2\x82", "\xf0\x9f\x98", "\xed\xa0\x80",
	"\xf4\x90\x80\x80", "\xf5", "\xfe", "\xff", "\xe0\x80\xaf",
}

// Ensure the fast encoder writes exactly what the byte-at-a-time one did, for every piece at
// every alignment of the eight-byte words and on either side of a word boundary.
func TestAppendStringMatchesReferenceAtEveryAlignment(t *testing.T) {
	pad := strings.Repeat("abcdefgh", 4)
	for _, p := range pieces {
		for _, q := range pieces {
			for pre := 0; pre <= 17; pre++ {
				for post := 0; post <= 9; post++ {
					checkAppendString(t, []byte(pad[:pre]+p+pad[:post]+q+pad[:post]))
				}
			}
		}
	}
}

// Ensure random texts built from the pieces, mostly plain runs of varied length, encode as the
// reference does, and that the result is valid JSON decoding to the text with invalid UTF-8
// replaced.
func TestAppendStringMatchesReferenceRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var b []byte
	for range 20000 {
		b = b[:0]
		for n := rng.IntN(12); n >= 0; n-- {
			if rng.IntN(2) == 0 {
				b = append(b, "the quick brown fox jumps over the lazy dog 0123456789"[:rng.IntN(55)]...)
			}
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		checkAppendString(t, b)
		var got string
		if err := json.Unmarshal(appendString(nil, b), &got); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		if want := strings.ToValidUTF8(string(b), "\ufffd"); utf8.ValidString(string(b)) && got != want {
			t.Fatalf("%q decodes to %q", b, got)
		}
	}
	for range 2000 {
		b = b[:rng.IntN(300)]
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		checkAppendString(t, b)
	}
}

// Ensure the timestamp formatted once serves AppendJSONBytesTS exactly as AppendJSONBytes
// formats it per line.
func TestAppendJSONBytesTSMatches(t *testing.T) {
	for _, ts := range []time.Time{time.Unix(0, 0), time.Unix(1764331201, 123456789), time.Unix(1764331201, 120000000),
		time.Date(2026, 11, 28, 12, 0, 1, 5, time.FixedZone("x", 3600))} {
		for _, partial := range []bool{false, true} {
			want := AppendJSONBytes([]byte("x"), 42, ts, Stderr, []byte("a \"b\" \xff"), partial)
			got := AppendJSONBytesTS([]byte("x"), 42, AppendTS(nil, ts), Stderr, []byte("a \"b\" \xff"), partial)
			if !bytes.Equal(got, want) {
				t.Fatalf("got %s, want %s", got, want)
			}
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, p := range pieces {
		f.Add([]byte("0123456" + p + "89abcdef"))
	}
	f.Fuzz(func(t *testing.T, s []byte) { checkAppendString(t, s) })
}

func BenchmarkAppendString(b *testing.B) {
	for _, c := range []struct{ name, text string }{
		{"ascii100", "0000001 " + strings.Repeat("p", 90)},
		{"ansi", "\x1b[32mINFO\x1b[0m step 12/40 loss=0.0123 acc=0.98 \"quoted\" path C:\\tmp\\x\tdone"},
		{"utf8", strings.Repeat("données €uro ", 8)},
	} {
		b.Run(c.name, func(b *testing.B) {
			text := []byte(c.text)
			dst := make([]byte, 0, 1024)
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				dst = appendString(dst[:0], text)
			}
		})
		b.Run(c.name+"/ref", func(b *testing.B) {
			text := []byte(c.text)
			dst := make([]byte, 0, 1024)
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				dst = refAppendString(dst[:0], text)
			}
		})
	}
}
