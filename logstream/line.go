package logstream

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxLine is the longest line text kept whole (bytes); the step runner splits longer lines into
// pieces marked Partial.
const MaxLine = 64 << 10

// AppendJSON appends the canonical JSON encoding of l to dst: fields in the order seq, ts, stream,
// text, partial, no HTML escaping, invalid UTF-8 replaced by U+FFFD. The runner writes lines in
// this form and the service stores and forwards the bytes as they are, so a line is encoded once
// and never re-encoded per viewer.
func AppendJSON(dst []byte, l Line) []byte {
	return appendLine(dst, l.Seq, l.TS, l.Stream, l.Text, l.Partial)
}

// AppendJSONBytes is AppendJSON for a line whose text is still a byte slice (the runner's case),
// without converting it to a string first.
func AppendJSONBytes(dst []byte, seq int64, ts time.Time, stream string, text []byte, partial bool) []byte {
	return appendLine(dst, seq, ts, stream, text, partial)
}

// appendLine is the one encoder behind AppendJSON and AppendJSONBytes; it is generic over the
// text's type so that neither caller converts (and copies) the text.
func appendLine[S string | []byte](dst []byte, seq int64, ts time.Time, stream string, text S, partial bool) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"ts":"`...)
	dst = AppendTS(dst, ts)
	return appendRest(dst, stream, text, partial)
}

// AppendTS appends ts as the canonical encoding writes it: UTC, RFC 3339 with the fraction's
// trailing zeros dropped.
func AppendTS(dst []byte, ts time.Time) []byte {
	return ts.UTC().AppendFormat(dst, time.RFC3339Nano)
}

// AppendJSONBytesTS is AppendJSONBytes with the timestamp already formatted by AppendTS. The
// runner stamps the lines of one read from a pipe with one timestamp, so it formats that once
// rather than once per line (formatting cost as much as encoding a 100-byte text).
func AppendJSONBytesTS(dst []byte, seq int64, ts []byte, stream string, text []byte, partial bool) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"ts":"`...)
	dst = append(dst, ts...)
	return appendRest(dst, stream, text, partial)
}

// appendRest appends what follows the timestamp's digits.
func appendRest[S string | []byte](dst []byte, stream string, text S, partial bool) []byte {
	dst = append(dst, `","stream":`...)
	dst = appendString(dst, stream)
	dst = append(dst, `,"text":`...)
	dst = appendString(dst, text)
	if partial {
		dst = append(dst, `,"partial":true`...)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s (a string or a byte slice) as a JSON string. Control characters are
// escaped, everything else (including ANSI escape sequences' printable parts and lone \r) is kept;
// invalid UTF-8 becomes \ufffd.
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is still to be copied as is
	for i := 0; i < len(s); {
		// Find the next byte that needs an escape, eight bytes at a time (most text has a few
		// per line at most), noting whether the run before it has a non-ASCII byte: only then
		// is its UTF-8 checked. Such bytes are all ASCII, so a run never ends inside a valid
		// UTF-8 sequence.
		j, high := i, uint64(0)
		for len(s)-j >= 8 {
			w := load64(s, j)
			if m := special(w); m != 0 {
				// The lowest flagged byte is exact: the first byte to escape.
				k := bits.TrailingZeros64(m) / 8
				high |= w & (1<<(8*k) - 1)
				j += k
				break
			}
			high |= w
			j += 8
		}
		for ; j < len(s); j++ {
			c := s[j]
			if c < 0x20 || c == '"' || c == '\\' {
				break
			}
			high |= uint64(c)
		}
		if high&highs != 0 && !validUTF8(s[i:j]) {
			dst = append(dst, s[start:i]...)
			dst = appendReplacingInvalid(dst, s[i:j])
			start = j
		}
		if j >= len(s) {
			break
		}
		dst = append(dst, s[start:j]...)
		switch c := s[j]; c {
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
		i = j + 1
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendReplacingInvalid appends s, which needs no escape, with every byte that does not start
// a valid UTF-8 sequence replaced by the escape \ufffd.
func appendReplacingInvalid[S string | []byte](dst []byte, s S) []byte {
	start := 0
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := decodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// validUTF8 is utf8.Valid or utf8.ValidString, whichever fits s.
func validUTF8[S string | []byte](s S) bool {
	switch v := any(s).(type) {
	case string:
		return utf8.ValidString(v)
	case []byte:
		return utf8.Valid(v)
	}
	panic("unreachable")
}

// load64 reads s[i:i+8] as a little-endian word; the compiler turns the shifts into one load for
// both a string and a byte slice.
func load64[S string | []byte](s S, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// decodeRune is utf8.DecodeRune or utf8.DecodeRuneInString, whichever fits s, so appendString
// never copies a string into a byte slice to decode it.
func decodeRune[S string | []byte](s S) (rune, int) {
	switch v := any(s).(type) {
	case string:
		return utf8.DecodeRuneInString(v)
	case []byte:
		return utf8.DecodeRune(v)
	}
	panic("unreachable")
}

// Record is one stored line: its seq and its canonical JSON encoding (no trailing newline). The
// bytes are never modified once stored, so readers may share them.
type Record struct {
	Seq  int64
	JSON []byte
}

// Decode parses the record back into a Line.
func (r Record) Decode() (Line, error) {
	var l Line
	err := json.Unmarshal(r.JSON, &l)
	return l, err
}

var errNotLine = errors.New("not a log line")

// ParseRecord validates one NDJSON line as a log line and returns it as a record. The runner's
// canonical encoding (starting with {"seq":N,) is checked for validity and kept byte for byte;
// any other encoding is decoded and re-encoded canonically.
func ParseRecord(b []byte) (Record, error) {
	r, _, err := parseRecord(b, true)
	return r, err
}

// parseRecord is ParseRecord; with clone false a canonical record shares b's memory. It reports
// whether the record kept b's bytes (canonical) rather than being re-encoded.
func parseRecord(b []byte, clone bool) (Record, bool, error) {
	b = bytes.TrimSpace(b)
	if seq, ok := canonicalSeq(b); ok && canonicalValid(b) {
		if clone {
			b = bytes.Clone(b)
		}
		return Record{Seq: seq, JSON: b}, true, nil
	}
	var l Line
	if err := json.Unmarshal(b, &l); err != nil {
		return Record{}, false, fmt.Errorf("%w: %v", errNotLine, err)
	}
	if l.Seq < 1 {
		return Record{}, false, fmt.Errorf("%w: seq %d", errNotLine, l.Seq)
	}
	return Record{Seq: l.Seq, JSON: AppendJSON(nil, l)}, false, nil
}

// canonicalSeq reads the seq of a line in canonical form.
func canonicalSeq(b []byte) (int64, bool) {
	const p = `{"seq":`
	if !bytes.HasPrefix(b, []byte(p)) {
		return 0, false
	}
	i := len(p)
	if i < len(b) && b[i] == '0' {
		return 0, false // seqs start at 1, and JSON numbers have no leading zeros
	}
	var n int64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' && i < len(p)+18 {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	if i == len(p) || i >= len(b) || b[i] != ',' || n < 1 {
		return 0, false
	}
	return n, true
}

// fastLine matches, at the start of b, one whole line in AppendJSON's form whose stream is one
// kfbridge writes and whose text needs no escape — what a runner pushes by the million — in one
// pass: the eight-bytes-at-a-time scan that validates the text also finds the end of the line,
// so the line is not searched for its newline first. It returns the seq and the line's length
// (without its newline, which must follow, or the end of b). Anything else (ok false) takes the
// general path, which accepts or refuses it.
func fastLine(b []byte) (seq int64, n int, ok bool) {
	const (
		pre    = `{"seq":`
		ts     = `,"ts":"`
		stream = `","stream":"`
		text   = `","text":"`
	)
	if len(b) < 64 || string(b[:len(pre)]) != pre || b[len(pre)] == '0' {
		return 0, 0, false
	}
	i := len(pre)
	for ; i < len(pre)+18 && b[i]-'0' <= 9; i++ {
		seq = seq*10 + int64(b[i]-'0')
	}
	if i == len(pre) || string(b[i:i+len(ts)]) != ts {
		return 0, 0, false
	}
	i, ok = canonicalTS(b, i+len(ts))
	if !ok || len(b)-i < len(stream)+6+len(text) || string(b[i:i+len(stream)]) != stream {
		return 0, 0, false
	}
	i += len(stream)
	switch string(b[i : i+6]) {
	case Stdout, Stderr, System:
	default:
		return 0, 0, false
	}
	i += 6
	if string(b[i:i+len(text)]) != text {
		return 0, 0, false
	}
	i += len(text)
	start := i
	var high uint64
	for len(b)-i >= 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		if m := special(w); m != 0 {
			// The lowest flagged byte is the first special one (a borrow only flags bytes above
			// it); the bytes before it still count for the UTF-8 check.
			k := bits.TrailingZeros64(m) / 8
			high |= w & (1<<(8*k) - 1)
			i += k
			goto end
		}
		high |= w
		i += 8
	}
	for ; i < len(b); i++ {
		c := b[i]
		if c < 0x20 || c == '"' || c == '\\' {
			goto end
		}
		high |= uint64(c)
	}
	return 0, 0, false
end:
	if i >= len(b) || b[i] != '"' || high&highs != 0 && !utf8.Valid(b[start:i]) {
		return 0, 0, false
	}
	i++
	switch {
	case i < len(b) && b[i] == '}':
		i++
	case len(b)-i >= len(`,"partial":true}`) && string(b[i:i+len(`,"partial":true}`)]) == `,"partial":true}`:
		i += len(`,"partial":true}`)
	default:
		return 0, 0, false
	}
	if i < len(b) && b[i] != '\n' {
		return 0, 0, false
	}
	return seq, i, true
}

// canonicalValid reports whether b is exactly a line in AppendJSON's form, valid UTF-8 included:
// a cheaper check than json.Valid plus utf8.Valid for the lines every runner sends, in one pass
// over the text. Anything else takes the decode path (which replaces invalid UTF-8).
func canonicalValid(b []byte) bool {
	i, ok := expect(b, 0, `{"seq":`)
	if !ok {
		return false
	}
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i, ok = expect(b, i, `,"ts":"`); !ok {
		return false
	}
	if i, ok = canonicalTS(b, i); !ok {
		return false
	}
	if i, ok = expect(b, i, `","stream":`); !ok {
		return false
	}
	if j, ok := knownStream(b, i); ok {
		i = j
	} else if i, ok = jsonString(b, i); !ok {
		return false
	}
	if i, ok = expect(b, i, `,"text":`); !ok {
		return false
	}
	if j, ok := plainText(b, i); ok {
		i = j
	} else if i, ok = jsonString(b, i); !ok {
		return false
	}
	if j, ok := expect(b, i, `,"partial":true`); ok {
		i = j
	}
	return i == len(b)-1 && b[i] == '}'
}

// canonicalTS checks the timestamp AppendJSON writes at b[i:], "2006-01-02T15:04:05[.999999999]Z"
// (UTC, trailing zeros of the fraction dropped), eight bytes at a time, and returns the index of
// its closing quote. Any other form takes the decode path. Every pushed line has one, so this is
// a measurable part of what a push costs.
func canonicalTS(b []byte, i int) (int, bool) {
	// The longest form is 30 bytes and a valid line always has more after its timestamp (the
	// quote, `,"stream":` …): asking for 30 lets every read below, the fraction's word included,
	// go unchecked.
	if len(b)-i < 30 {
		return i, false
	}
	const (
		dateSep = 0xff<<32 | 0xff<<56 // "YYYY-MM-": '-' at 4 and 7
		dateVal = '-'<<32 | '-'<<56
		timeSep = 0xff<<16 | 0xff<<40 // "DDTHH:MM": 'T' at 2, ':' at 5
		timeVal = 'T'<<16 | ':'<<40
	)
	w0, w1 := binary.LittleEndian.Uint64(b[i:]), binary.LittleEndian.Uint64(b[i+8:])
	if w0&dateSep != dateVal || w1&timeSep != timeVal || b[i+16] != ':' {
		return i, false
	}
	// Separators become '0' so that one digit test covers each word.
	w0 = w0&^dateSep | ones*'0'&dateSep
	w1 = w1&^timeSep | ones*'0'&timeSep
	w2 := uint64(b[i+17]) | uint64(b[i+18])<<8 | ones*'0'&^0xffff
	if nonDigits(w0)|nonDigits(w1)|nonDigits(w2) != 0 || !validDate(b[i:]) {
		return i, false
	}
	i += 19
	if b[i] == '.' {
		// Count the fraction's digits: the first non-digit is the lowest flagged byte.
		n := 8
		if m := nonDigits(binary.LittleEndian.Uint64(b[i+1:])); m != 0 {
			n = bits.TrailingZeros64(m) / 8
		} else if b[i+9]-'0' <= 9 {
			n = 9
		}
		if n == 0 {
			return i, false
		}
		i += 1 + n
	}
	if b[i] != 'Z' {
		return i, false
	}
	return i + 1, true
}

// validDate reports whether the digits of "YYYY-MM-DDTHH:MM:SS" at the start of t name a real
// UTC time (what time.Parse accepts): a line whose timestamp has the right shape but, say, month
// 13 takes the decoding path, which refuses it, instead of being stored for viewers to choke on.
func validDate(t []byte) bool {
	two := func(k int) int { return int(t[k]-'0')*10 + int(t[k+1]-'0') }
	year := two(0)*100 + two(2)
	month, day := two(5), two(8)
	if month < 1 || month > 12 || day < 1 || two(11) > 23 || two(14) > 59 || two(17) > 59 {
		return false
	}
	days := 31
	switch month {
	case 4, 6, 9, 11:
		days = 30
	case 2:
		days = 28
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			days = 29
		}
	}
	return day <= days
}

// nonDigits flags (with the byte's high bit) every byte of w that is not an ASCII digit, and at
// least the lowest such byte exactly: a byte below '0' borrows from the bytes above it, which
// can only add flags there.
func nonDigits(w uint64) uint64 {
	return ((w + ones*0x46) | (w - ones*0x30) | w) & highs
}

// knownStream matches the stream names kfbridge writes at b[i:] and returns the index after the
// closing quote.
func knownStream(b []byte, i int) (int, bool) {
	if len(b)-i < 8 || b[i] != '"' || b[i+7] != '"' {
		return i, false
	}
	switch string(b[i+1 : i+7]) {
	case Stdout, Stderr, System:
		return i + 8, true
	}
	return i, false
}

// plainText matches the text string at b[i:] when it is the line's last member and holds no
// escape: its closing quote is then known from the end of the line, and one pass eight bytes at a
// time checks nothing in between is a quote, backslash or control byte and notes whether any byte
// is non-ASCII (only then is the text's UTF-8 checked). It returns the index after the closing
// quote; any other text takes jsonString.
func plainText(b []byte, i int) (int, bool) {
	end := len(b) - 2 // `"}`
	if bytes.HasSuffix(b, []byte(`","partial":true}`)) {
		end = len(b) - len(`","partial":true}`)
	}
	if end <= i || b[i] != '"' || b[end] != '"' {
		return i, false
	}
	s := b[i+1 : end]
	k := 0
	var high uint64 // any byte >= 0x80 seen: the text needs a UTF-8 check
	for ; len(s)-k >= 16; k += 16 {
		w0, w1 := binary.LittleEndian.Uint64(s[k:]), binary.LittleEndian.Uint64(s[k+8:])
		if special(w0)|special(w1) != 0 {
			return i, false
		}
		high |= w0 | w1
	}
	for ; k < len(s); k++ {
		c := s[k]
		if c < 0x20 || c == '"' || c == '\\' {
			return i, false
		}
		high |= uint64(c)
	}
	if high&highs != 0 && !utf8.Valid(s) {
		return i, false
	}
	return end + 1, true
}

func expect(b []byte, i int, s string) (int, bool) {
	if len(b)-i < len(s) || string(b[i:i+len(s)]) != s {
		return i, false
	}
	return i + len(s), true
}

// jsonString checks a JSON string starting at b[i] (the opening quote), valid UTF-8 included, and
// returns the index after its closing quote.
func jsonString(b []byte, i int) (int, bool) {
	j, ok := jsonStringSyntax(b, i)
	if !ok || !utf8.Valid(b[i:j]) {
		return i, false
	}
	return j, true
}

// jsonStringSyntax is jsonString without the UTF-8 check.
func jsonStringSyntax(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	// Fast path for a string without escapes, what most text is: find the closing quote and
	// check there is no backslash before it (both vectorised searches), then that no byte is a
	// control byte, eight at a time.
	if q := bytes.IndexByte(b[i+1:], '"'); q >= 0 {
		s := b[i+1 : i+1+q]
		if bytes.IndexByte(s, '\\') < 0 {
			k := 0
			for ; len(s)-k >= 8; k += 8 {
				if control(binary.LittleEndian.Uint64(s[k:])) != 0 {
					return i, false
				}
			}
			for ; k < len(s); k++ {
				if s[k] < 0x20 {
					return i, false
				}
			}
			return i + 2 + q, true
		}
	}
	for i++; i < len(b); i++ {
		// Skip eight plain bytes at a time: no quote, backslash or control byte among them.
		for len(b)-i >= 8 && special(binary.LittleEndian.Uint64(b[i:])) == 0 {
			i += 8
		}
		if i >= len(b) {
			break
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return i, false
		case c == '\\':
			i++
			if i >= len(b) {
				return i, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i < 5 {
					return i, false
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return i, false
					}
				}
				i += 4
			default:
				return i, false
			}
		}
	}
	return i, false
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special is non-zero iff one of the eight bytes of w is a quote, a backslash or a control byte
// (< 0x20), i.e. a byte that may not appear unescaped inside a JSON string. Bytes >= 0x80 count
// as plain; UTF-8 is checked separately.
func special(w uint64) uint64 {
	// (x - ones) & ^x & highs is non-zero iff a byte of x is zero; with ones*0x20 for ones, iff
	// a byte of x is below 0x20.
	q, bs := w^(ones*'"'), w^(ones*'\\')
	return ((w-ones*0x20)&^w | (q-ones)&^q | (bs-ones)&^bs) & highs
}

// control is non-zero iff one of the eight bytes of w is a control byte (< 0x20).
func control(w uint64) uint64 { return (w - ones*0x20) & ^w & highs }
