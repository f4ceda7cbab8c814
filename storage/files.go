package storage

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Helpers shared by the packager and the step runner for moving whole files.

// Deleter is implemented by stores that can remove objects (both built-in stores do).
type Deleter interface {
	Delete(ctx context.Context, key string) error
}

// Presigner is implemented by stores that can hand out credential-free GET URLs (S3).
type Presigner interface {
	Presign(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// PutFile uploads the local file at path to key. An *os.File body lets the S3 store upload large
// files as parallel multipart parts read straight from the file.
func PutFile(ctx context.Context, s Store, key, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("put file %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("put file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("put file %s: not a regular file", path)
	}
	return s.Put(ctx, key, f, st.Size())
}

// GetFile downloads key to the local file at dst, creating parent directories. The file appears
// only when complete (temporary file in the same directory, then rename).
func GetFile(ctx context.Context, s Store, key, dst string) (err error) {
	rc, err := s.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("get file %s: %w", dst, err)
	}
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".part-*")
	if err != nil {
		return fmt.Errorf("get file %s: %w", dst, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := io.Copy(f, ctxReader{ctx, rc}); err != nil {
		return fmt.Errorf("get file %s from %s: %w", dst, key, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("get file %s: %w", dst, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("get file %s: %w", dst, err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return fmt.Errorf("get file %s: %w", dst, err)
	}
	return nil
}

// ListGlob lists the objects below dir (a key prefix naming a directory) whose path relative to dir
// matches pattern, sorted by key. Matching is path.Match segment by segment, with three
// additions that step outputs need: a pattern without glob characters that names a "directory"
// matches every object below it, a "**" segment matches any number of segments, and a pattern that
// matches a directory level matches every object below that directory. Elyra breaks on
// wildcard outputs; this is what lets them flow downstream.
func ListGlob(ctx context.Context, s Store, dir, pattern string) ([]Info, error) {
	pattern = path.Clean(filepath.ToSlash(pattern))
	if pattern == "." || pattern == ".." || strings.HasPrefix(pattern, "../") || path.IsAbs(pattern) {
		return nil, fmt.Errorf("list %s: invalid pattern %q", dir, pattern)
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("list %s: invalid pattern %q: %w", dir, pattern, err)
	}
	base := strings.Trim(dir, "/")
	if base != "" {
		base += "/"
	}
	// List as little as possible: the literal leading segments of the pattern narrow the prefix.
	lit := literalPrefix(pattern)
	all, err := s.List(ctx, base+lit)
	if err != nil {
		return nil, err
	}
	out := []Info{}
	for _, info := range all {
		rel := strings.TrimPrefix(info.Key, base)
		if MatchPath(pattern, rel) {
			out = append(out, info)
		}
	}
	return out, nil
}

// MatchPath reports whether the slash-separated rel matches pattern in ListGlob's sense.
func MatchPath(pattern, rel string) bool {
	if !hasMeta(pattern) {
		return rel == pattern || strings.HasPrefix(rel, pattern+"/")
	}
	return matchSegs(strings.Split(pattern, "/"), strings.Split(rel, "/"))
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchSegs(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], name[0]); !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	// A pattern that matched a directory level matches everything below it ("out/*" matches
	// "out/sub/file" when out/sub is a directory of outputs).
	return true
}

func hasMeta(s string) bool { return strings.ContainsAny(s, "*?[\\") }

// literalPrefix is the part of pattern before its first segment with glob characters, ending in
// "/" (or "" if the first segment is a glob). For a literal pattern it is the pattern itself.
func literalPrefix(pattern string) string {
	if !hasMeta(pattern) {
		return pattern
	}
	segs := strings.Split(pattern, "/")
	var b strings.Builder
	for _, s := range segs {
		if hasMeta(s) {
			break
		}
		b.WriteString(s + "/")
	}
	return b.String()
}
