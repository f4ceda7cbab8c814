package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Reasons a workspace path is rejected; Confine and NodeFiles wrap them so callers can tell them
// apart with errors.Is.
var (
	ErrEmptyPath    = errors.New("path is empty")
	ErrAbsolutePath = errors.New("absolute paths are not allowed; use a path relative to the workspace")
	ErrParentPath   = errors.New("\"..\" is not allowed in paths; the file must be inside the workspace")
	ErrOutsideRoot  = errors.New("path resolves (through a symlink) to a location outside the workspace")
	ErrNoMatch      = errors.New("matches no file")
	ErrBadGlob      = errors.New("is not a valid glob pattern")
	ErrTooManyFiles = errors.New("expands to too many files")
)

// maxWalkEntries bounds how many directory entries a dependency expansion may visit, so a glob
// over a huge workspace fails clearly instead of hanging the request.
const maxWalkEntries = 100000

// Confine resolves rel (slash-separated, relative to root) to an absolute path inside root. It
// rejects empty and absolute paths, any ".." element, and paths whose existing part resolves
// through symlinks to somewhere outside root. The returned path is root-joined (not
// symlink-resolved); the part of rel that does not exist yet is accepted as is.
func Confine(root, rel string) (string, error) {
	if err := checkRel(rel); err != nil {
		return "", fmt.Errorf("confine %q: %w", rel, err)
	}
	absRoot, realRoot, err := resolveRoot(root)
	if err != nil {
		return "", fmt.Errorf("confine %q: %w", rel, err)
	}
	full := filepath.Join(absRoot, filepath.FromSlash(path.Clean(rel)))
	if err := checkInside(absRoot, realRoot, full); err != nil {
		return "", fmt.Errorf("confine %q: %w", rel, err)
	}
	return full, nil
}

// checkRel rejects the lexical forms that could leave the workspace.
func checkRel(rel string) error {
	switch {
	case strings.TrimSpace(rel) == "":
		return ErrEmptyPath
	case strings.ContainsRune(rel, 0):
		return errors.New("path contains a NUL byte")
	case strings.HasPrefix(rel, "/") || strings.HasPrefix(rel, `\`) || filepath.IsAbs(rel) || hasDriveLetter(rel):
		return ErrAbsolutePath
	}
	for _, el := range strings.Split(strings.ReplaceAll(rel, `\`, "/"), "/") {
		if el == ".." {
			return ErrParentPath
		}
	}
	return nil
}

func hasDriveLetter(s string) bool {
	return len(s) >= 2 && s[1] == ':' && (s[0]|0x20 >= 'a' && s[0]|0x20 <= 'z')
}

func resolveRoot(root string) (abs, real string, err error) {
	if root == "" {
		return "", "", errors.New("workspace root is empty")
	}
	abs, err = filepath.Abs(root)
	if err != nil {
		return "", "", fmt.Errorf("workspace root %q: %w", root, err)
	}
	real, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return "", "", fmt.Errorf("workspace root %q: %w", root, err)
	}
	return abs, real, nil
}

// checkInside verifies that the longest existing prefix of full resolves inside realRoot.
func checkInside(absRoot, realRoot, full string) error {
	cur := full
	for {
		if _, err := os.Lstat(cur); err == nil {
			resolved, err := filepath.EvalSymlinks(cur)
			if err != nil {
				return fmt.Errorf("cannot resolve symlink: %w", err)
			}
			if !within(realRoot, resolved) {
				return ErrOutsideRoot
			}
			return nil
		}
		if cur == absRoot || len(cur) <= len(absRoot) {
			return nil
		}
		cur = filepath.Dir(cur)
	}
}

func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator)) || root == string(filepath.Separator)
}

// NodeFiles lists what goes into a node's dependency archive. dir is the directory of the node's
// file (workspace-relative, "." at the top level); files are relative to dir: the node file's base
// name first, then the expanded dependencies, sorted and de-duplicated.
//
// Expansion rules: a dependency without glob characters names a file or a directory (a directory
// contributes its files, recursively with include_subdirectories); a glob is matched against the
// files below dir ("*" is every file of dir; with include_subdirectories a pattern also matches in
// every subdirectory). Hidden directories are skipped and hidden files only match patterns that
// start with "."; symlinks are followed while they stay inside root and ignored otherwise. A
// dependency that matches nothing or escapes root is an error.
func NodeFiles(root string, n *Node) (dir string, files []string, err error) {
	if n == nil {
		return "", nil, errors.New("node files: nil node")
	}
	dir, base, err := nodeFile(root, n)
	if err != nil {
		return "", nil, fmt.Errorf("node files of %s: %w", nodeDisplay(n), err)
	}
	deps, depErrs := expandDeps(root, dir, n.Dependencies, n.IncludeSubdirectories, nil)
	if len(depErrs) > 0 {
		errs := make([]error, len(depErrs))
		for i, de := range depErrs {
			errs[i] = fmt.Errorf("node files of %s: %w", nodeDisplay(n), de)
		}
		return "", nil, errors.Join(errs...)
	}
	files = []string{base}
	for _, f := range deps {
		if f != base {
			files = append(files, f)
		}
	}
	return dir, files, nil
}

// nodeFile checks the node's file: confined to root, existing, a regular file.
func nodeFile(root string, n *Node) (dir, base string, err error) {
	abs, err := Confine(root, n.Filename)
	if err != nil {
		return "", "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", "", fmt.Errorf("file %q does not exist in the workspace: %w", n.Filename, fs.ErrNotExist)
		}
		return "", "", fmt.Errorf("file %q: %w", n.Filename, err)
	}
	if !st.Mode().IsRegular() {
		return "", "", fmt.Errorf("file %q is not a regular file", n.Filename)
	}
	clean := path.Clean(n.Filename)
	return path.Dir(clean), path.Base(clean), nil
}

// DependencyError is one declared dependency that could not be expanded.
type DependencyError struct {
	Dependency string
	Err        error
}

func (e *DependencyError) Error() string {
	return fmt.Sprintf("dependency %q: %v", e.Dependency, e.Err)
}

func (e *DependencyError) Unwrap() error { return e.Err }

// expandDeps expands dependencies relative to dir (workspace-relative) and returns the sorted,
// de-duplicated files plus one error per dependency that failed. cache may carry directory
// listings across calls (Validate shares one over all nodes); nil means no sharing.
func expandDeps(root, dir string, deps []string, recursive bool, cache listCache) ([]string, []*DependencyError) {
	if len(deps) == 0 {
		return nil, nil
	}
	if cache == nil {
		cache = listCache{}
	}
	var errs []*DependencyError
	fail := func(dep string, err error) { errs = append(errs, &DependencyError{Dependency: dep, Err: err}) }
	_, realRoot, err := resolveRoot(root)
	if err != nil {
		for _, d := range deps {
			fail(d, err)
		}
		return nil, errs
	}
	dirAbs, err := Confine(root, dir)
	if err != nil {
		for _, d := range deps {
			fail(d, err)
		}
		return nil, errs
	}
	w := &walker{realRoot: realRoot}
	dw := &walker{realRoot: realRoot, skipHidden: true}
	set := map[string]bool{}
	for _, dep := range deps {
		d := strings.TrimSpace(dep)
		if err := checkRel(d); err != nil {
			fail(dep, err)
			continue
		}
		clean := path.Clean(strings.TrimPrefix(d, "./"))
		if !hasMeta(clean) {
			abs := filepath.Join(dirAbs, filepath.FromSlash(clean))
			if _, err := Confine(root, path.Join(dir, clean)); err != nil {
				fail(dep, errors.Unwrap(err))
				continue
			}
			st, err := os.Stat(abs)
			if err != nil {
				fail(dep, fmt.Errorf("%w: %q does not exist", ErrNoMatch, path.Join(dir, clean)))
				continue
			}
			if st.Mode().IsRegular() {
				set[clean] = true
				continue
			}
			if !st.IsDir() {
				fail(dep, fmt.Errorf("%q is neither a file nor a directory", path.Join(dir, clean)))
				continue
			}
			sub, err := cache.list(dw, abs, clean, recursive)
			if err != nil {
				fail(dep, err)
				continue
			}
			if len(sub) == 0 {
				fail(dep, fmt.Errorf("%w: directory %q is empty", ErrNoMatch, path.Join(dir, clean)))
				continue
			}
			for _, f := range sub {
				set[f] = true
			}
			continue
		}
		if _, err := path.Match(clean, ""); err != nil {
			fail(dep, ErrBadGlob)
			continue
		}
		// List only what the pattern can reach: below its literal leading directories, and
		// deeper than one level only when the rest of the pattern (or recursion) asks for it.
		// Recursive matching may hit at any depth, so it lists the whole tree.
		listAbs, listRel := dirAbs, ""
		base, rest := globBase(clean)
		if !recursive && base != "" {
			if _, err := Confine(root, path.Join(dir, base)); err != nil {
				fail(dep, errors.Unwrap(err))
				continue
			}
			listAbs, listRel = filepath.Join(dirAbs, filepath.FromSlash(base)), base
			if st, err := os.Stat(listAbs); err != nil || !st.IsDir() {
				fail(dep, fmt.Errorf("%w: directory %q does not exist", ErrNoMatch, path.Join(dir, base)))
				continue
			}
		}
		listing, err := cache.list(w, listAbs, listRel, recursive || strings.Contains(rest, "/"))
		if err != nil {
			fail(dep, err)
			continue
		}
		hiddenOK := strings.HasPrefix(path.Base(clean), ".")
		matched := false
		for _, f := range listing {
			if !hiddenOK && strings.HasPrefix(path.Base(f), ".") {
				continue
			}
			if globMatch(clean, f, recursive) {
				set[f] = true
				matched = true
			}
		}
		if !matched {
			fail(dep, ErrNoMatch)
		}
	}
	out := make([]string, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	slices.Sort(out)
	return out, errs
}

func hasMeta(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// globBase splits a pattern into its leading directories without glob characters and the rest:
// "conf/env/*.yaml" -> "conf/env", "*.yaml"; "*/x" -> "", "*/x".
func globBase(pattern string) (base, rest string) {
	parts := strings.Split(pattern, "/")
	i := 0
	for i < len(parts)-1 && !hasMeta(parts[i]) {
		i++
	}
	return path.Join(parts[:i]...), strings.Join(parts[i:], "/")
}

// listCache memoizes directory listings by (directory, relative name, depth, hidden rule).
type listCache map[string][]string

func (c listCache) list(w *walker, abs, rel string, deep bool) ([]string, error) {
	key := fmt.Sprintf("%s\x00%s\x00%t\x00%t", abs, rel, deep, w.skipHidden)
	if l, ok := c[key]; ok {
		return l, nil
	}
	l, err := w.list(abs, rel, deep)
	if err == nil {
		c[key] = l
	}
	return l, err
}

// globMatch matches a pattern against a file path relative to the node's directory; with
// recursive, the pattern may also match the path relative to any subdirectory.
func globMatch(pattern, f string, recursive bool) bool {
	if ok, _ := path.Match(pattern, f); ok {
		return true
	}
	if !recursive {
		return false
	}
	for i := 0; i < len(f); i++ {
		if f[i] == '/' {
			if ok, _ := path.Match(pattern, f[i+1:]); ok {
				return true
			}
		}
	}
	return false
}

// walker lists files below a directory, following symlinks that stay inside the workspace.
type walker struct {
	realRoot   string
	entries    int
	skipHidden bool
}

// list returns the files below abs (named rel relative to the node directory), recursing into
// non-hidden subdirectories when deep is set.
func (w *walker) list(abs, rel string, deep bool) ([]string, error) {
	var out []string
	visited := map[string]bool{}
	var walk func(abs, rel string) error
	walk = func(abs, rel string) error {
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return nil
		}
		if visited[real] {
			return nil // a symlink loop or a second link to the same directory
		}
		visited[real] = true
		ents, err := os.ReadDir(abs)
		if err != nil {
			return fmt.Errorf("list %q: %w", rel, err)
		}
		for _, e := range ents {
			w.entries++
			if w.entries > maxWalkEntries {
				return fmt.Errorf("%w (more than %d entries)", ErrTooManyFiles, maxWalkEntries)
			}
			name := e.Name()
			childAbs := filepath.Join(abs, name)
			childRel := path.Join(rel, name)
			typ := e.Type()
			if typ&fs.ModeSymlink != 0 {
				target, err := filepath.EvalSymlinks(childAbs)
				if err != nil || !within(w.realRoot, target) {
					continue // dangling, or leads out of the workspace: never packaged
				}
				st, err := os.Stat(target)
				if err != nil {
					continue
				}
				typ = st.Mode().Type()
			}
			switch {
			case typ.IsDir():
				if deep && !strings.HasPrefix(name, ".") {
					if err := walk(childAbs, childRel); err != nil {
						return err
					}
				}
			case typ.IsRegular():
				// Hidden files are left to the glob matcher, which only takes them for dot
				// patterns; a directory dependency never includes them.
				if !(w.skipHidden && strings.HasPrefix(name, ".")) {
					out = append(out, childRel)
				}
			}
		}
		return nil
	}
	if err := walk(abs, rel); err != nil {
		return nil, err
	}
	return out, nil
}
