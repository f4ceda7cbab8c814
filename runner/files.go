package runner

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/kfbridge/kfbridge/storage"
)

// fetchInputs downloads the outputs of the node's ancestors from the run directory into the
// working directory, at the same relative paths. An input may be a file, a glob or a directory,
// exactly as the producing node declared it in its outputs, so wildcard outputs flow downstream
// (Elyra downloads inputs by literal name and breaks on them).
func (s *step) fetchInputs(ctx context.Context, wd string) error {
	if len(s.cfg.inputs) == 0 {
		return nil
	}
	t := s.now()
	dir := strings.TrimSuffix(s.cfg.directory, "/")
	n := 0
	for _, in := range s.cfg.inputs {
		objs, err := storage.ListGlob(ctx, s.store, dir, in)
		if err != nil {
			return fmt.Errorf("input %q: %w", in, err)
		}
		matched := 0
		for _, o := range objs {
			rel := strings.TrimPrefix(o.Key, dir+"/")
			if strings.HasPrefix(rel, ".kfbridge/") {
				continue
			}
			dest, err := confined(wd, rel)
			if err != nil {
				return fmt.Errorf("input %s: %w", rel, err)
			}
			if err := storage.GetFile(ctx, s.store, o.Key, dest); err != nil {
				return fmt.Errorf("download input %s: %w", rel, err)
			}
			matched++
		}
		if matched == 0 {
			return fmt.Errorf("input %q: no such object in %s (did the producing step write it?)", in, s.cfg.directory)
		}
		n += matched
	}
	s.sink.system(fmt.Sprintf("downloaded %d input file(s) (%s)", n, s.now().Sub(t).Round(time.Millisecond)))
	return nil
}

// uploadOutputs expands each declared output (file, glob or directory) in the working directory and
// uploads every file to the run directory at its relative path.
func (s *step) uploadOutputs(ctx context.Context, wd string) error {
	if len(s.cfg.outputs) == 0 {
		return nil
	}
	t := s.now()
	files := map[string]bool{}
	for _, out := range s.cfg.outputs {
		matches, err := expandOutput(wd, out)
		if err != nil {
			return fmt.Errorf("output %q: %w", out, err)
		}
		if len(matches) == 0 {
			return fmt.Errorf("output %q was not produced by %s", out, filepath.Base(s.cfg.file))
		}
		for _, m := range matches {
			files[m] = true
		}
	}
	var size int64
	for _, rel := range sortedKeys(files) {
		local := filepath.Join(wd, filepath.FromSlash(rel))
		if fi, err := os.Stat(local); err == nil {
			size += fi.Size()
		}
		if err := storage.PutFile(ctx, s.store, storage.OutputKey(s.cfg.directory, rel), local); err != nil {
			return fmt.Errorf("upload output %s: %w", rel, err)
		}
	}
	s.sink.system(fmt.Sprintf("uploaded %d output file(s), %d bytes (%s)", len(files), size, s.now().Sub(t).Round(time.Millisecond)))
	return nil
}

// expandOutput returns the slash-separated relative paths of the regular files an output pattern
// names inside wd.
func expandOutput(wd, pattern string) ([]string, error) {
	rel := path.Clean(filepath.ToSlash(pattern))
	if path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, fmt.Errorf("must be a relative path inside the working directory")
	}
	matches, err := filepath.Glob(filepath.Join(wd, filepath.FromSlash(rel)))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range matches {
		err := filepath.WalkDir(m, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				r, err := filepath.Rel(wd, p)
				if err != nil {
					return err
				}
				out = append(out, filepath.ToSlash(r))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// confined joins rel to dir and refuses results outside dir.
func confined(dir, rel string) (string, error) {
	clean := path.Clean("/" + rel)
	if clean == "/" || clean != "/"+strings.TrimPrefix(rel, "./") && strings.Contains(rel, "..") {
		return "", fmt.Errorf("path %q escapes the working directory", rel)
	}
	return filepath.Join(dir, filepath.FromSlash(clean[1:])), nil
}
