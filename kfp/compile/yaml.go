package compile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// JSON encodes v as compact JSON without HTML escaping (which would only turn the '&' of
// presigned URLs into \u0026), ready for YAML. sizeHint pre-sizes the buffer (0 for none), which
// saves the buffer's repeated doubling on multi-megabyte documents.
func JSON(v any, sizeHint int) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(sizeHint)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// YAML transcodes compact JSON (as produced by json.Marshal) into block-style YAML, keeping the
// member order of the JSON (struct field order, sorted map keys). The compilers emit YAML because
// KFP users and tools expect it, but a general YAML library round-trips through a generic tree and
// costs ~1 s for a 1,000-node pipeline; this single pass over the bytes costs a few milliseconds.
//
// Strings are written plain only when no YAML 1.1 or 1.2 reader could take them for anything but
// a string; multi-line strings become literal blocks; everything else is a double-quoted scalar,
// for which the JSON string token itself is valid YAML.
func YAML(js []byte) ([]byte, error) {
	return AppendYAML(make([]byte, 0, len(js)+len(js)/8), js)
}

// AppendYAML appends the YAML transcoding of js (see YAML) to dst.
func AppendYAML(dst, js []byte) ([]byte, error) {
	t := transcoder{in: js, out: dst}
	t.skipSpace()
	if err := t.value(0, ctxTop); err != nil {
		return nil, err
	}
	t.skipSpace()
	if t.pos != len(t.in) {
		return nil, fmt.Errorf("yaml: trailing data at offset %d", t.pos)
	}
	if n := len(t.out); n == len(dst) || t.out[n-1] != '\n' {
		t.out = append(t.out, '\n')
	}
	return t.out, nil
}

type yctx int

const (
	ctxTop  yctx = iota // document root
	ctxKey              // value of a mapping key, after "key:"
	ctxItem             // value of a sequence item, after "- "
)

type transcoder struct {
	in    []byte
	pos   int
	out   []byte
	cache map[string]rendered
}

// rendered is the YAML written for one escaped string token at one indentation.
type rendered struct {
	indent int
	out    []byte
}

func (t *transcoder) skipSpace() {
	for t.pos < len(t.in) && (t.in[t.pos] == ' ' || t.in[t.pos] == '\n' || t.in[t.pos] == '\t' || t.in[t.pos] == '\r') {
		t.pos++
	}
}

func (t *transcoder) indent(n int) {
	t.out = append(t.out, '\n')
	for range n {
		t.out = append(t.out, ' ')
	}
}

// value writes the JSON value at t.pos. indent is the indentation of the enclosing collection's
// entries; ctx says what has been written on the current line already.
func (t *transcoder) value(indent int, ctx yctx) error {
	if t.pos >= len(t.in) {
		return fmt.Errorf("yaml: unexpected end of JSON")
	}
	switch c := t.in[t.pos]; c {
	case '{':
		return t.object(indent, ctx)
	case '[':
		return t.array(indent, ctx)
	case '"':
		tok, content, escaped, err := t.str()
		if err != nil {
			return err
		}
		if ctx != ctxTop {
			t.out = append(t.out, ' ')
		}
		if !escaped {
			// Without escapes the string has no newline, so it is plain or double-quoted; the
			// token itself is the quoted form unless it holds a rune YAML needs escaped.
			switch {
			case plainSafe(content):
				t.out = append(t.out, content...)
			case asciiPrintable(content):
				t.out = append(t.out, tok...)
			default:
				t.quoted(tok, string(content))
			}
			return nil
		}
		// Escaped strings (multi-line scripts above all) often repeat verbatim, once per step;
		// their rendering is reused rather than decoded again.
		if len(tok) >= 64 {
			if c, ok := t.cache[string(tok)]; ok && c.indent == indent {
				t.out = append(t.out, c.out...)
				return nil
			}
		}
		s, err := stringValue(tok, content, escaped)
		if err != nil {
			return err
		}
		mark := len(t.out)
		t.scalar(tok, s, indent)
		if len(tok) >= 64 {
			if t.cache == nil {
				t.cache = map[string]rendered{}
			}
			t.cache[string(tok)] = rendered{indent: indent, out: t.out[mark:len(t.out):len(t.out)]}
		}
		return nil
	default:
		start := t.pos
		for t.pos < len(t.in) && !strings.ContainsRune(",}] \n\t\r", rune(t.in[t.pos])) {
			t.pos++
		}
		if ctx != ctxTop {
			t.out = append(t.out, ' ')
		}
		t.out = append(t.out, t.in[start:t.pos]...)
		return nil
	}
}

func (t *transcoder) object(indent int, ctx yctx) error {
	t.pos++ // {
	t.skipSpace()
	if t.pos < len(t.in) && t.in[t.pos] == '}' {
		t.pos++
		if ctx != ctxTop {
			t.out = append(t.out, ' ')
		}
		t.out = append(t.out, "{}"...)
		return nil
	}
	// Members of a mapping that is a key's value go one level deeper on new lines; a mapping that
	// is a sequence item starts on the "- " line.
	inner := indent
	if ctx == ctxKey {
		inner = indent + 2
	}
	first := true
	for {
		t.skipSpace()
		if t.pos >= len(t.in) || t.in[t.pos] != '"' {
			return fmt.Errorf("yaml: expected object key at offset %d", t.pos)
		}
		tok, content, escaped, err := t.str()
		if err != nil {
			return err
		}
		switch {
		case first && ctx == ctxItem:
			// already after "- "
		case first && ctx == ctxTop:
		default:
			t.indent(inner)
		}
		first = false
		if !escaped && plainSafe(content) {
			t.out = append(t.out, content...)
		} else {
			key, err := stringValue(tok, content, escaped)
			if err != nil {
				return err
			}
			if plainSafe(key) {
				t.out = append(t.out, key...)
			} else {
				t.quoted(tok, key)
			}
		}
		t.out = append(t.out, ':')
		t.skipSpace()
		if t.pos >= len(t.in) || t.in[t.pos] != ':' {
			return fmt.Errorf("yaml: expected ':' at offset %d", t.pos)
		}
		t.pos++
		t.skipSpace()
		if err := t.value(inner, ctxKey); err != nil {
			return err
		}
		t.skipSpace()
		if t.pos < len(t.in) && t.in[t.pos] == ',' {
			t.pos++
			continue
		}
		if t.pos < len(t.in) && t.in[t.pos] == '}' {
			t.pos++
			return nil
		}
		return fmt.Errorf("yaml: expected ',' or '}' at offset %d", t.pos)
	}
}

func (t *transcoder) array(indent int, ctx yctx) error {
	t.pos++ // [
	t.skipSpace()
	if t.pos < len(t.in) && t.in[t.pos] == ']' {
		t.pos++
		if ctx != ctxTop {
			t.out = append(t.out, ' ')
		}
		t.out = append(t.out, "[]"...)
		return nil
	}
	// A sequence under a key is written at the key's own indentation (the common Kubernetes
	// style); a sequence inside a sequence starts on the "- " line.
	first := true
	for {
		t.skipSpace()
		switch {
		case first && ctx == ctxItem:
		case first && ctx == ctxTop:
		default:
			t.indent(indent)
		}
		first = false
		t.out = append(t.out, '-')
		if t.pos < len(t.in) && (t.in[t.pos] == '{' || t.in[t.pos] == '[') && !t.emptyCollection() {
			t.out = append(t.out, ' ')
			if err := t.value(indent+2, ctxItem); err != nil {
				return err
			}
		} else if err := t.value(indent+2, ctxKey); err != nil {
			return err
		}
		t.skipSpace()
		if t.pos < len(t.in) && t.in[t.pos] == ',' {
			t.pos++
			continue
		}
		if t.pos < len(t.in) && t.in[t.pos] == ']' {
			t.pos++
			return nil
		}
		return fmt.Errorf("yaml: expected ',' or ']' at offset %d", t.pos)
	}
}

// emptyCollection reports whether the collection at t.pos is {} or [].
func (t *transcoder) emptyCollection() bool {
	i := t.pos + 1
	for i < len(t.in) && (t.in[i] == ' ' || t.in[i] == '\n' || t.in[i] == '\t' || t.in[i] == '\r') {
		i++
	}
	return i < len(t.in) && (t.in[i] == '}' || t.in[i] == ']')
}

// str reads a JSON string token. It returns the raw token (quotes included), its content between
// the quotes, and whether the content has escapes (and so differs from the string's value).
func (t *transcoder) str() (tok, content []byte, escaped bool, err error) {
	start := t.pos
	i := start + 1
	for {
		j := bytes.IndexByte(t.in[i:], '"')
		if j < 0 {
			return nil, nil, false, fmt.Errorf("yaml: unterminated string at offset %d", start)
		}
		if k := bytes.IndexByte(t.in[i:i+j], '\\'); k >= 0 {
			escaped = true
			i += k + 2 // skip the escaped character, which may be a quote
			continue
		}
		t.pos = i + j + 1
		tok = t.in[start:t.pos]
		return tok, tok[1 : len(tok)-1], escaped, nil
	}
}

// stringValue decodes the value of a string token read by str.
func stringValue(tok, content []byte, escaped bool) (string, error) {
	if !escaped {
		return string(content), nil
	}
	// json.Marshal writes only escapes that Go string literals share (it never writes \/ and
	// writes non-ASCII as UTF-8), so strconv.Unquote decodes them without a JSON validation pass.
	s, err := strconv.Unquote(string(tok))
	if err != nil {
		return "", fmt.Errorf("yaml: bad JSON string %.40s: %w", tok, err)
	}
	return s, nil
}

// scalar writes a string value: plain, literal block, or the double-quoted JSON token.
func (t *transcoder) scalar(tok []byte, s string, indent int) {
	switch {
	case plainSafe(s):
		t.out = append(t.out, s...)
	case blockSafe(s):
		t.out = append(t.out, '|')
		if !strings.HasSuffix(s, "\n") {
			t.out = append(t.out, '-')
		}
		body := strings.TrimSuffix(s, "\n")
		for line := range strings.SplitSeq(body, "\n") {
			if line == "" {
				t.out = append(t.out, '\n')
				continue
			}
			t.indent(indent + 2)
			t.out = append(t.out, line...)
		}
	default:
		t.quoted(tok, s)
	}
}

// quoted writes s double-quoted. The JSON token is already a valid YAML double-quoted scalar,
// except that JSON leaves C1 controls (U+0085 is a YAML 1.1 line break), DEL and the BOM
// unescaped; strings containing those are re-escaped rune by rune.
func (t *transcoder) quoted(tok []byte, s string) {
	if !strings.ContainsFunc(s, yamlUnsafeRune) {
		t.out = append(t.out, tok...)
		return
	}
	t.out = append(t.out, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			t.out = append(t.out, '\\', byte(r))
		case r < 0x20 || yamlUnsafeRune(r):
			t.out = fmt.Appendf(t.out, "\\u%04x", r)
		default:
			t.out = utf8.AppendRune(t.out, r)
		}
	}
	t.out = append(t.out, '"')
}

// asciiPrintable reports whether b has only bytes 0x20-0x7e.
func asciiPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func yamlUnsafeRune(r rune) bool {
	return r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0xfeff || r == 0x2028 || r == 0x2029
}

// plainSafe reports whether s can be written as a plain scalar and still be read back as the same
// string by YAML 1.1 (go-yaml v2, PyYAML) and YAML 1.2 readers: it starts with a letter, '/', '_'
// or a dash followed by a letter or dash; it uses only letters, digits, "_./-", single inner
// spaces and ':' not followed by a space; and it is none of the words YAML 1.1 reads as booleans
// or null.
func plainSafe[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > 512 {
		return false
	}
	c := s[0]
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '/', c == '_':
	case c == '-' && len(s) > 1 && !(len(s) >= 3 && s[1] == '-' && s[2] == '-') && (s[1] == '-' || s[1] >= 'a' && s[1] <= 'z' || s[1] >= 'A' && s[1] <= 'Z'):
		// Flags such as --file: '-' followed by a letter or '-' is neither a sequence entry nor
		// a number; "---" at the start is a document marker and stays quoted.
	default:
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '/', c == '-':
		case c == ' ':
			if i == len(s)-1 || s[i+1] == ' ' || s[i+1] == '#' || s[i+1] == '-' {
				return false
			}
		case c == ':':
			if i == len(s)-1 || s[i+1] == ' ' {
				return false
			}
		default:
			return false
		}
	}
	if len(s) <= 5 {
		var low [5]byte
		for i := 0; i < len(s); i++ {
			low[i] = s[i] | 0x20 // ASCII letters only at this point; digits and _./- are unaffected for the words below
		}
		switch string(low[:len(s)]) {
		case "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf":
			return false
		}
	}
	return true
}

// blockSafe reports whether s can be a literal block scalar: several lines of printable text, no
// leading space on the first line (that would need an indentation indicator), and at most one
// trailing newline (more would need the keep indicator).
func blockSafe(s string) bool {
	if !strings.Contains(s, "\n") || strings.HasSuffix(s, "\n\n") || strings.HasPrefix(s, " ") || strings.HasPrefix(s, "\n") || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == '\n' {
			continue
		}
		if r < 0x20 || r == 0x7f || r == 0xfeff || r == 0x2028 || r == 0x2029 || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	// Lines with trailing spaces survive a literal block, but a line of only spaces before a
	// more-indented line would not; keep it simple and quote such strings.
	for line := range strings.SplitSeq(s, "\n") {
		if strings.TrimSpace(line) == "" && line != "" {
			return false
		}
	}
	return true
}
