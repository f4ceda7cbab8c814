package storage

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Dependency archives.
//
// An archive is a gzip-compressed tar of regular files only (symlinks are dereferenced, directories
// are implied by the file paths). Everything that could vary between two packagings of the same
// tree is fixed: entries are sorted by path, every entry has archiveModTime, uid/gid 0 and no owner
// names, the mode is 0644 or 0755 (executable if any x bit is set), and the gzip header carries no
// name and no mtime. Equal trees therefore give byte-identical archives, whose sha256 names them in
// the store (ArchiveKey).

// archiveModTime is the modification time of every entry (a fixed, portable date).
var archiveModTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// ArchiveFormat identifies the archive encoding (tar layout and compressor settings). It is part of
// TreeDigest, so a change of format never reuses an archive recorded under the old one.
const ArchiveFormat = "kfbridge-archive-v1"

// Limits ExtractArchive enforces against hostile or corrupt archives.
var (
	// MaxArchiveEntries is the largest number of entries an archive may have.
	MaxArchiveEntries = 1 << 20
	// MaxArchiveBytes is the largest total uncompressed size an archive may have.
	MaxArchiveBytes int64 = 64 << 30
)

// ArchiveProgress is called by WriteArchiveProgress after each file with the number of files and
// input bytes archived so far.
type ArchiveProgress func(files int, bytes int64)

// WriteArchive writes the deterministic tar.gz of files (paths relative to dir, slash-separated) to
// w and returns the hex sha256 of the bytes written. Compression runs on all cores.
func WriteArchive(w io.Writer, dir string, files []string) (sha256hex string, err error) {
	return WriteArchiveProgress(w, dir, files, nil)
}

// WriteArchiveProgress is WriteArchive with a progress callback (may be nil).
func WriteArchiveProgress(w io.Writer, dir string, files []string, progress ArchiveProgress) (sha256hex string, err error) {
	names, err := archiveNames(files)
	if err != nil {
		return "", fmt.Errorf("write archive of %s: %w", dir, err)
	}
	h := sha256.New()
	z := newPgzipWriter(io.MultiWriter(w, h), pgzipLevel)
	defer func() {
		// Close always runs so the compressor goroutines exit, even after an error.
		if cerr := z.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write archive of %s: %w", dir, cerr)
		}
		if err == nil {
			sha256hex = hex.EncodeToString(h.Sum(nil))
		}
	}()
	tw := tar.NewWriter(z)
	buf := make([]byte, 256<<10)
	var total int64
	for i, name := range names {
		n, err := addFile(tw, dir, name, buf)
		if err != nil {
			return "", fmt.Errorf("write archive of %s: %s: %w", dir, name, err)
		}
		total += n
		if progress != nil {
			progress(i+1, total)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("write archive of %s: %w", dir, err)
	}
	return "", nil // sha256hex is set by the deferred Close
}

// archiveNames validates, sorts and de-duplicates the file list.
func archiveNames(files []string) ([]string, error) {
	names := make([]string, 0, len(files))
	for _, f := range files {
		f = filepath.ToSlash(f)
		c := path.Clean(f)
		if f == "" || c == "." || path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") {
			return nil, fmt.Errorf("file %q is not a relative path inside the directory", f)
		}
		names = append(names, c)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// normMode is the archived permission of a file: executable or not, nothing else.
func normMode(m fs.FileMode) int64 {
	if m&0o111 != 0 {
		return 0o755
	}
	return 0o644
}

func addFile(tw *tar.Writer, dir, name string, buf []byte) (int64, error) {
	// os.Open follows symlinks: the archive holds the content, as Elyra's archives do. The file
	// list (pipeline.NodeFiles) has already refused symlinks that leave the workspace.
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("not a regular file (%s)", st.Mode().Type())
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     st.Size(),
		Mode:     normMode(st.Mode()),
		ModTime:  archiveModTime,
		// USTAR for names that fit, PAX otherwise: an explicit choice so the bytes do not depend on
		// archive/tar's heuristics (e.g. USTAR's prefix field) in some future Go version.
		Format: tar.FormatUSTAR,
	}
	if len(name) > 100 || !isASCII(name) {
		hdr.Format = tar.FormatPAX
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return 0, err
	}
	n, err := io.CopyBuffer(tw, io.LimitReader(f, st.Size()), buf)
	if err != nil {
		return n, err
	}
	if n != st.Size() {
		return n, fmt.Errorf("file shrank while archiving (%d of %d bytes)", n, st.Size())
	}
	if k, _ := f.Read(buf[:1]); k > 0 {
		return n, errors.New("file grew while archiving")
	}
	return n, nil
}

// TreeDigest is the hex sha256 of the archive's input: ArchiveFormat and, for every file in archive
// order, its path, archived mode, size and content hash. Equal digests mean equal archives, so the
// digest can find an existing archive without compressing anything.
func TreeDigest(ctx context.Context, dir string, files []string) (string, error) {
	names, err := archiveNames(files)
	if err != nil {
		return "", fmt.Errorf("digest of %s: %w", dir, err)
	}
	h := sha256.New()
	io.WriteString(h, ArchiveFormat+"\x00")
	buf := make([]byte, 256<<10)
	var num [8]byte
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		fh := sha256.New()
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			return "", fmt.Errorf("digest of %s: %w", dir, err)
		}
		st, err := f.Stat()
		if err == nil && !st.Mode().IsRegular() {
			err = fmt.Errorf("%s: not a regular file", name)
		}
		var n int64
		if err == nil {
			n, err = io.CopyBuffer(fh, f, buf)
		}
		f.Close()
		if err != nil {
			return "", fmt.Errorf("digest of %s: %w", dir, err)
		}
		io.WriteString(h, name+"\x00")
		binary.BigEndian.PutUint64(num[:], uint64(normMode(st.Mode())))
		h.Write(num[:])
		binary.BigEndian.PutUint64(num[:], uint64(n))
		h.Write(num[:])
		h.Write(fh.Sum(nil))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ExtractArchive unpacks a tar.gz into dest (created if missing). Entries that would land outside
// dest, go through a symlink, are symlinks pointing outside dest, are hard links or devices, or
// exceed MaxArchiveEntries/MaxArchiveBytes are refused with an error naming the entry.
func ExtractArchive(ctx context.Context, r io.Reader, dest string) error {
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return fmt.Errorf("extract archive: %w", err)
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return fmt.Errorf("extract archive: %w", err)
	}
	defer root.Close()
	zr, err := gzip.NewReader(ctxReader{ctx, r})
	if err != nil {
		return fmt.Errorf("extract archive into %s: %w", dest, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var entries int
	var total int64
	buf := make([]byte, 256<<10)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("extract archive into %s: %w", dest, err)
		}
		if entries++; entries > MaxArchiveEntries {
			return fmt.Errorf("extract archive into %s: more than %d entries", dest, MaxArchiveEntries)
		}
		if err := extractEntry(root, tr, hdr, &total, buf); err != nil {
			return fmt.Errorf("extract archive into %s: entry %q: %w", dest, hdr.Name, err)
		}
	}
}

func extractEntry(root *os.Root, tr *tar.Reader, hdr *tar.Header, total *int64, buf []byte) error {
	name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
	if hdr.Name == "" || path.IsAbs(hdr.Name) || name == ".." || strings.HasPrefix(name, "../") || strings.Contains(hdr.Name, "\\") {
		return errors.New("path escapes the destination")
	}
	if name == "." {
		return nil
	}
	// os.Root already refuses to leave dest, but a symlink inside dest can still redirect a write to
	// another place inside it (or, once followed later by user code, outside). Refuse to write
	// through any symlink.
	if err := noSymlinkParents(root, name); err != nil {
		return err
	}
	mode := fs.FileMode(normMode(fs.FileMode(hdr.Mode)))
	switch hdr.Typeflag {
	case tar.TypeDir:
		return root.MkdirAll(name, 0o755)
	case tar.TypeReg, tar.TypeRegA:
		if hdr.Size < 0 || hdr.Size > MaxArchiveBytes-*total {
			return fmt.Errorf("size %d exceeds the archive limit of %d bytes", hdr.Size, MaxArchiveBytes)
		}
		*total += hdr.Size
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		if st, err := root.Lstat(name); err == nil && st.Mode()&fs.ModeSymlink != 0 {
			return errors.New("would overwrite a symlink")
		}
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
		if err != nil {
			return err
		}
		_, err = io.CopyBuffer(f, io.LimitReader(tr, hdr.Size), buf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case tar.TypeSymlink:
		t := hdr.Linkname
		if t == "" || path.IsAbs(t) || strings.Contains(t, "\\") {
			return fmt.Errorf("symlink to %q points outside the destination", t)
		}
		if r := path.Join(path.Dir(name), t); r == ".." || strings.HasPrefix(r, "../") {
			return fmt.Errorf("symlink to %q points outside the destination", t)
		}
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		return root.Symlink(t, name)
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("unsupported entry type %q (only files, directories and symlinks)", hdr.Typeflag)
	}
}

// noSymlinkParents fails if any existing parent directory of name is a symlink.
func noSymlinkParents(root *os.Root, name string) error {
	parts := strings.Split(name, "/")
	for i := 1; i < len(parts); i++ {
		p := strings.Join(parts[:i], "/")
		st, err := root.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if st.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("path goes through symlink %q", p)
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 || s[i] == 0 {
			return false
		}
	}
	return true
}
