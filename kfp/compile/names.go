package compile

import (
	"strconv"
	"strings"
)

// DNSLabel turns s into a DNS-1123 label of at most max characters: lowercase letters, digits and
// '-', starting with a letter and ending with a letter or digit (Argo template and task names, KFP
// task names and generateName all need this). Runs of other characters become one '-'. An empty
// result, or one that starts with a digit, gets the prefix fallback.
func DNSLabel(s string, max int, fallback string) string {
	var b strings.Builder
	b.Grow(len(s))
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
			continue
		}
		dash = true
	}
	out := b.String()
	if out == "" {
		out = fallback
	} else if out[0] >= '0' && out[0] <= '9' {
		out = fallback + "-" + out
	}
	if len(out) > max {
		out = strings.TrimRight(out[:max], "-")
	}
	return out
}

// LabelValue turns s into a valid Kubernetes label value: at most 63 characters of
// [A-Za-z0-9_.-], beginning and ending with an alphanumeric character (Elyra sanitizes its
// pipeline/node name labels the same way).
func LabelValue(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 63 {
			break
		}
	}
	out := b.String()
	if len(out) > 63 {
		out = out[:63]
	}
	return strings.TrimFunc(out, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
}

// Namer hands out unique names: a name already taken gets "-2", "-3", … appended, shortening the
// base so the result keeps the base's length limit.
type Namer struct {
	used map[string]bool
}

// NewNamer returns a Namer for which the reserved names are already taken.
func NewNamer(reserved ...string) *Namer {
	n := &Namer{used: make(map[string]bool, len(reserved))}
	for _, r := range reserved {
		n.used[r] = true
	}
	return n
}

// Unique returns name, or name with the smallest numeric suffix that is still free, and marks the
// result as taken.
func (n *Namer) Unique(name string) string {
	if !n.used[name] {
		n.used[name] = true
		return name
	}
	for i := 2; ; i++ {
		suffix := "-" + strconv.Itoa(i)
		base := name
		if len(base)+len(suffix) > maxNameLen {
			base = strings.TrimRight(base[:maxNameLen-len(suffix)], "-")
		}
		if c := base + suffix; !n.used[c] {
			n.used[c] = true
			return c
		}
	}
}
