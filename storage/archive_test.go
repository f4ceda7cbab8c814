package storage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree creates files under dir from a map of relative path to content.
func writeTree(t testing.TB, dir string, files map[string]string) []string {
	t.Helper()
	var names []string
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return names
}

// mixedData returns n bytes mixing text-like (compressible) and random (incompressible) runs.
func mixedData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var b bytes.Buffer
	words := []string{"alpha ", "beta ", "gamma ", "delta\n", "import numpy as np\n", "x = 42\n"}
	for b.Len() < n {
		if r.IntN(4) == 0 {
			chunk := make([]byte, 1+r.IntN(8192))
			for i := range chunk {
				chunk[i] = byte(r.Uint32())
			}
			b.Write(chunk)
		} else {
			for range 1 + r.IntN(500) {
				b.WriteString(words[r.IntN(len(words))])
			}
		}
	}
	return b.Bytes()[:n]
}

func archiveBytes(t *testing.T, dir string, files []string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	sum, err := WriteArchive(&buf, dir, files)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(buf.Bytes())
	if sum != hex.EncodeToString(want[:]) {
		t.Fatalf("returned sha256 %s does not match the bytes written (%x)", sum, want)
	}
	return buf.Bytes(), sum
}

func TestArchiveRoundTripAndDeterminism(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"main.py":        "print('hi')\n",
		"data/big.bin":   string(mixedData(1, 3*pgzipBlockSize+12345)), // several parallel blocks
		"data/empty.txt": "",
		"lib/util.py":    "def f(): return 1\n",
		"ünïcode/名前.txt": "non-ascii name\n",
		strings.Repeat("d", 90) + "/" + strings.Repeat("n", 60) + ".txt": "long name\n",
	}
	names := writeTree(t, src, files)
	if err := os.Chmod(filepath.Join(src, "main.py"), 0o700); err != nil {
		t.Fatal(err)
	}
	a1, s1 := archiveBytes(t, src, names)

	// Same tree, different order of the list, different mtimes and permissions noise: same bytes.
	rev := append([]string(nil), names...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	if err := os.Chtimes(filepath.Join(src, "lib/util.py"), archiveModTime.AddDate(3, 0, 0), archiveModTime.AddDate(5, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "lib/util.py"), 0o600); err != nil {
		t.Fatal(err)
	}
	a2, s2 := archiveBytes(t, src, append(rev, "main.py"))
	if s1 != s2 || !bytes.Equal(a1, a2) {
		t.Fatalf("archives of the same tree differ: %s vs %s", s1, s2)
	}

	// The standard library's gzip and tar read it, with the fixed metadata.
	zr, err := gzip.NewReader(bytes.NewReader(a1))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header has name %q mtime %v; want none", zr.Name, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(archiveModTime) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" {
			t.Errorf("%s: metadata not normalized: %v %d %d %q", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname)
		}
		wantMode := int64(0o644)
		if h.Name == "main.py" {
			wantMode = 0o755
		}
		if h.Mode != wantMode {
			t.Errorf("%s: mode %o, want %o", h.Name, h.Mode, wantMode)
		}
		b, _ := io.ReadAll(tr)
		if string(b) != files[h.Name] {
			t.Errorf("%s: content differs after round trip (%d vs %d bytes)", h.Name, len(b), len(files[h.Name]))
		}
		got = append(got, h.Name)
	}
	if len(got) != len(files) {
		t.Fatalf("archive has %d entries, want %d: %v", len(got), len(files), got)
	}
	for i := 1; i < len(got); i++ {
		if got[i-1] >= got[i] {
			t.Errorf("entries not sorted: %q before %q", got[i-1], got[i])
		}
	}

	// ExtractArchive restores the tree.
	dst := t.TempDir()
	if err := ExtractArchive(context.Background(), bytes.NewReader(a1), dst); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		b, err := os.ReadFile(filepath.Join(dst, filepath.FromSlash(name)))
		if err != nil || string(b) != content {
			t.Errorf("extracted %s: err %v, %d bytes want %d", name, err, len(b), len(content))
		}
	}
	if st, _ := os.Stat(filepath.Join(dst, "main.py")); st == nil || st.Mode().Perm()&0o100 == 0 {
		t.Errorf("main.py lost its executable bit")
	}

	// Changing one byte changes the archive.
	if err := os.WriteFile(filepath.Join(src, "lib/util.py"), []byte("def f(): return 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, s3 := archiveBytes(t, src, names)
	if s3 == s1 {
		t.Fatal("archive unchanged after a file changed")
	}
}

func TestArchiveReadByGNUTar(t *testing.T) {
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("no tar binary")
	}
	src := t.TempDir()
	names := writeTree(t, src, map[string]string{"a.py": "x", "sub/b.bin": string(mixedData(7, 2*pgzipBlockSize+1))})
	a, _ := archiveBytes(t, src, names)
	p := filepath.Join(t.TempDir(), "a.tar.gz")
	if err := os.WriteFile(p, a, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tarBin, "tzvf", p).CombinedOutput()
	if err != nil {
		t.Fatalf("GNU tar rejects the archive: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "sub/b.bin") {
		t.Fatalf("tar listing misses sub/b.bin:\n%s", out)
	}
}

func TestArchiveRejectsBadInput(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a": "x"})
	for _, bad := range []string{"../a", "/etc/passwd", "", "."} {
		if _, err := WriteArchive(io.Discard, src, []string{bad}); err == nil {
			t.Errorf("WriteArchive accepted %q", bad)
		}
	}
	if _, err := WriteArchive(io.Discard, src, []string{"missing"}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: err %v", err)
	}
	if err := os.Mkdir(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteArchive(io.Discard, src, []string{"d"}); err == nil {
		t.Errorf("a directory was archived as a file")
	}
	// A failing writer surfaces as an error and does not hang.
	if _, err := WriteArchive(failWriter{}, src, []string{"a"}); err == nil {
		t.Error("write error not reported")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// craft builds a tar.gz from raw headers, for hostile-archive tests.
func craft(t testing.TB, entries ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		h := h
		body := ""
		if h.Typeflag == tar.TypeReg {
			body = strings.Repeat("x", int(h.Size))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, body)
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestExtractRejectsEscapes(t *testing.T) {
	reg := func(name string) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}
	}
	link := func(name, target string) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}
	}
	cases := map[string][]tar.Header{
		"dotdot":         {reg("../evil")},
		"nested dotdot":  {reg("a/../../evil")},
		"absolute":       {reg("/tmp/evil")},
		"abs symlink":    {link("l", "/etc")},
		"escaping link":  {link("a/l", "../../x")},
		"write via link": {link("l", "sub"), reg("l/f")},
		"chained escape": {link("a/b/c", "../.."), link("a/b/c/s", "../../x")},
		"hardlink":       {{Name: "h", Typeflag: tar.TypeLink, Linkname: "a"}},
		"device":         {{Name: "dev", Typeflag: tar.TypeChar}},
		"overwrite link": {link("l", "target"), reg("l")},
	}
	for name, entries := range cases {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dest := filepath.Join(parent, "dest")
			err := ExtractArchive(context.Background(), bytes.NewReader(craft(t, entries...)), dest)
			if err == nil {
				t.Fatal("hostile archive was extracted")
			}
			if _, err := os.Stat(filepath.Join(parent, "evil")); err == nil {
				t.Fatal("a file escaped the destination")
			}
		})
	}
	// An inside symlink is fine.
	dest := t.TempDir()
	if err := ExtractArchive(context.Background(), bytes.NewReader(craft(t, reg("data/f"), link("l", "data/f"))), dest); err != nil {
		t.Fatalf("inside symlink refused: %v", err)
	}
}

func TestExtractRejectsAbsurdSizes(t *testing.T) {
	old := MaxArchiveBytes
	MaxArchiveBytes = 1000
	defer func() { MaxArchiveBytes = old }()
	a := craft(t, tar.Header{Name: "a", Typeflag: tar.TypeReg, Size: 600, Mode: 0o644},
		tar.Header{Name: "b", Typeflag: tar.TypeReg, Size: 600, Mode: 0o644})
	err := ExtractArchive(context.Background(), bytes.NewReader(a), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized archive: err %v", err)
	}
}

func TestTreeDigest(t *testing.T) {
	src := t.TempDir()
	names := writeTree(t, src, map[string]string{"a": "1", "b/c": "2"})
	ctx := context.Background()
	d1, err := TreeDigest(ctx, src, names)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := TreeDigest(ctx, src, []string{"b/c", "a"})
	if d1 != d2 {
		t.Fatal("digest depends on list order")
	}
	os.WriteFile(filepath.Join(src, "a"), []byte("3"), 0o644)
	d3, _ := TreeDigest(ctx, src, names)
	os.Chmod(filepath.Join(src, "a"), 0o755)
	d4, _ := TreeDigest(ctx, src, names)
	if len(map[string]bool{d1: true, d3: true, d4: true}) != 3 {
		t.Fatalf("digest misses content or mode changes: %s %s %s", d1, d3, d4)
	}
}

func BenchmarkWriteArchive(b *testing.B) {
	src := b.TempDir()
	m := map[string]string{}
	for i := range 8 {
		m[fmt.Sprintf("f%d", i)] = string(mixedData(uint64(i), 4<<20))
	}
	names := writeTree(b, src, m)
	b.SetBytes(32 << 20)
	for b.Loop() {
		if _, err := WriteArchive(io.Discard, src, names); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzExtractArchive checks the one property that matters for hostile input: whatever the
// archive, nothing is created outside the destination.
func FuzzExtractArchive(f *testing.F) {
	reg := func(name string) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeReg, Size: 1, Mode: 0o644}
	}
	link := func(name, target string) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}
	}
	f.Add(craft(f, reg("a"), reg("b/c")))
	f.Add(craft(f, reg("../x")))
	f.Add(craft(f, link("l", ".."), reg("l/x")))
	f.Add(craft(f, link("a/b/c", "../.."), link("a/b/c/s", "../../x"), reg("a/b/c/s/y")))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dest := filepath.Join(parent, "dest")
		_ = ExtractArchive(context.Background(), bytes.NewReader(data), dest)
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "dest" {
				t.Fatalf("archive created %s outside the destination", e.Name())
			}
		}
	})
}
