package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// tmpDirName is the directory under a Local store's root that holds files being written. Writes go
// there first and are renamed into place, so a reader never sees a partial object; List skips it.
const tmpDirName = ".kfbridge-tmp"

// Local is a Store backed by a directory: each key is a file below the root. It is the embedded
// default store and the store the local runtime's steps use through file:// endpoints.
type Local struct {
	root string // absolute, cleaned
}

// NewLocal returns a directory store rooted at dir, creating dir if needed.
func NewLocal(dir string) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local store %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("local store %q: %w", abs, err)
	}
	return &Local{root: abs}, nil
}

// Root is the store's directory.
func (l *Local) Root() string { return l.root }

// Location implements Store.
func (l *Local) Location() string { return "file://" + filepath.ToSlash(l.root) }

// CheckKey reports whether key is a valid object key: slash-separated, relative, without empty,
// "." or ".." components. Both implementations apply it so that a key that works locally also
// works on S3 and the other way round.
func CheckKey(key string) error {
	if key == "" {
		return errors.New("empty object key")
	}
	if strings.HasPrefix(key, "/") || strings.Contains(key, "\\") || strings.ContainsRune(key, 0) {
		return fmt.Errorf("invalid object key %q: must be a relative slash-separated path", key)
	}
	for _, c := range strings.Split(key, "/") {
		switch c {
		case "", ".", "..":
			return fmt.Errorf("invalid object key %q: empty, \".\" or \"..\" component", key)
		}
	}
	if c, _, _ := strings.Cut(key, "/"); c == tmpDirName {
		return fmt.Errorf("invalid object key %q: %s is reserved", key, tmpDirName)
	}
	return nil
}

// path maps a checked key to its file.
func (l *Local) path(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return filepath.Join(l.root, filepath.FromSlash(key)), nil
}

// Put implements Store. The object becomes visible only once it is complete: it is written to a
// temporary file and renamed over the key.
func (l *Local) Put(ctx context.Context, key string, r io.Reader, size int64) (err error) {
	p, err := l.path(key)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("put %s/%s: %w", l.Location(), key, err)
		}
	}()
	tmpDir := filepath.Join(l.root, tmpDirName)
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(tmpDir, "put-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err != nil {
		return err
	}
	if size >= 0 && n != size {
		return fmt.Errorf("short body: got %d bytes, expected %d", n, size)
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// Get implements Store.
func (l *Local) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", l.Location(), key, err)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", l.Location(), key, notExist(err))
	}
	if st, err := f.Stat(); err != nil || st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("get %s/%s: %w", l.Location(), key, ErrNotExist)
	}
	return f, nil
}

// Stat implements Store.
func (l *Local) Stat(ctx context.Context, key string) (Info, error) {
	p, err := l.path(key)
	if err != nil {
		return Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("stat %s/%s: %w", l.Location(), key, err)
	}
	st, err := os.Stat(p)
	if err != nil {
		return Info{}, fmt.Errorf("stat %s/%s: %w", l.Location(), key, notExist(err))
	}
	if st.IsDir() {
		return Info{}, fmt.Errorf("stat %s/%s: %w", l.Location(), key, ErrNotExist)
	}
	return Info{Key: key, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// List implements Store. prefix is a plain key prefix (not necessarily a directory), as on S3.
func (l *Local) List(ctx context.Context, prefix string) ([]Info, error) {
	if strings.HasPrefix(prefix, "/") || strings.Contains(prefix, "\\") || slices.Contains(strings.Split(prefix, "/"), "..") {
		return nil, fmt.Errorf("list %s: invalid prefix %q", l.Location(), prefix)
	}
	// Walk only the deepest directory the prefix names completely.
	start := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = path.Clean(prefix[:i])
	}
	base := filepath.Join(l.root, filepath.FromSlash(start))
	out := []Info{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(l.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if key == tmpDirName {
				return fs.SkipDir
			}
			return nil
		}
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		st, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // removed while walking
				return nil
			}
			return err
		}
		if !st.Mode().IsRegular() {
			return nil
		}
		out = append(out, Info{Key: key, Size: st.Size(), ModTime: st.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s prefix %q: %w", l.Location(), prefix, err)
	}
	// WalkDir's per-directory order is not key order ("a/b" vs "a-c"), so sort the keys.
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes the object at key; a missing object is not an error.
func (l *Local) Delete(ctx context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s/%s: %w", l.Location(), key, err)
	}
	return nil
}

// DeletePrefix removes every object whose key starts with prefix. A prefix ending in "/" names a
// directory, which goes in one os.RemoveAll; a missing one is not an error.
func (l *Local) DeletePrefix(ctx context.Context, prefix string) error {
	if prefix == "" || prefix == "/" {
		return fmt.Errorf("delete %s: refusing to delete the whole store", l.Location())
	}
	if dir, ok := strings.CutSuffix(prefix, "/"); ok {
		p, err := l.path(dir)
		if err != nil {
			return fmt.Errorf("delete %s*: %w", prefix, err)
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("delete %s/%s*: %w", l.Location(), prefix, err)
		}
		return nil
	}
	infos, err := l.List(ctx, prefix)
	if err != nil {
		return err
	}
	var errs []error
	for _, in := range infos {
		if err := l.Delete(ctx, in.Key); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// notExist maps a file-system "not found" (including "a parent is a file") to ErrNotExist while
// keeping the cause in the message.
func notExist(err error) error {
	var pe *fs.PathError
	if errors.Is(err, fs.ErrNotExist) || (errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "not a directory")) {
		return fmt.Errorf("%w (%v)", ErrNotExist, err)
	}
	return err
}

// ctxReader stops a copy when its context is canceled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
