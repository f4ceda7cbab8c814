package handlers

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kfbridge/kfbridge/pipeline"
	"github.com/kfbridge/kfbridge/runs"
)

// maxListing caps one directory listing, so a huge directory cannot make a huge response.
const maxListing = 5000

// fileEntry is one entry of a workspace listing.
type fileEntry struct {
	Name string `json:"name"`
	// Path is workspace-relative with forward slashes: what POST /api/v1/runs takes as "path".
	Path string `json:"path"`
	Type string `json:"type"` // "dir" or "file"
	// Kind is "pipeline", "notebook", "python" or "r" for files.
	Kind     string    `json:"kind,omitempty"`
	Size     int64     `json:"size,omitempty"`
	Modified time.Time `json:"modified"`
}

// fileListing is the body of GET /api/v1/files.
type fileListing struct {
	Dir       string      `json:"dir"`
	Parent    *string     `json:"parent,omitempty"`
	Entries   []fileEntry `json:"entries"`
	Truncated bool        `json:"truncated,omitempty"`
}

// submittableKind maps a file name to the kind of submission it can be, or "".
func submittableKind(name string) string {
	switch strings.ToLower(path.Ext(name)) {
	case ".pipeline":
		return "pipeline"
	case ".ipynb":
		return "notebook"
	case ".py":
		return "python"
	case ".r":
		return "r"
	}
	return ""
}

// ListFiles handles GET /api/v1/files?dir=D: the directories and submittable files (.pipeline,
// .ipynb, .py, .r) in workspace directory D ("" is the root), for the UI's file picker. D is
// confined to the workspace like every submitted path; hidden entries and symlinks that leave the
// workspace are not listed.
func ListFiles(log *slog.Logger, workspace string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dir := strings.Trim(filepath.ToSlash(r.URL.Query().Get("dir")), "/")
		if dir == "" {
			dir = "."
		}
		abs, err := pipeline.Confine(workspace, dir)
		if err != nil {
			Error(log, w, r, fmt.Errorf("%w: dir %q: %v", errBadRequest, dir, err))
			return
		}
		ents, err := os.ReadDir(abs)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				Error(log, w, r, fmt.Errorf("%w: dir %q: no such directory in the workspace", runs.ErrNotFound, dir))
				return
			}
			Error(log, w, r, fmt.Errorf("list files: read dir %q: %w", dir, err))
			return
		}
		rel := path.Clean(dir)
		out := fileListing{Dir: rel, Entries: []fileEntry{}}
		if rel == "." {
			out.Dir = ""
		} else {
			parent := path.Dir(rel)
			if parent == "." {
				parent = ""
			}
			out.Parent = &parent
		}
		for _, e := range ents {
			name := e.Name()
			if strings.HasPrefix(name, ".") || name == "__pycache__" || name == "node_modules" {
				continue
			}
			p := path.Join(out.Dir, name)
			full := filepath.Join(abs, name)
			if e.Type()&fs.ModeSymlink != 0 {
				// Follow a link only if it stays inside the workspace.
				if _, err := pipeline.Confine(workspace, p); err != nil {
					continue
				}
			}
			fi, err := os.Stat(full)
			if err != nil {
				continue
			}
			ent := fileEntry{Name: name, Path: p, Modified: fi.ModTime().UTC()}
			switch {
			case fi.IsDir():
				ent.Type = "dir"
			case fi.Mode().IsRegular():
				ent.Kind = submittableKind(name)
				if ent.Kind == "" {
					continue
				}
				ent.Type, ent.Size = "file", fi.Size()
			default:
				continue
			}
			if len(out.Entries) == maxListing {
				out.Truncated = true
				break
			}
			out.Entries = append(out.Entries, ent)
		}
		// Directories first, then pipelines, then other files; by name within each group.
		rank := func(e fileEntry) int {
			switch {
			case e.Type == "dir":
				return 0
			case e.Kind == "pipeline":
				return 1
			}
			return 2
		}
		sort.SliceStable(out.Entries, func(i, j int) bool {
			a, b := out.Entries[i], out.Entries[j]
			if rank(a) != rank(b) {
				return rank(a) < rank(b)
			}
			return strings.ToLower(a.Name) < strings.ToLower(b.Name)
		})
		w.Header().Set("Cache-Control", "no-store")
		encode(w, http.StatusOK, out)
	})
}
