package storage

import (
	"bytes"
	"compress/gzip"
	"io"
	"runtime"
	"testing"
)

func pgzip(t *testing.T, data []byte, chunk int) []byte {
	t.Helper()
	var out bytes.Buffer
	z := newPgzipWriter(&out, pgzipLevel)
	for len(data) > 0 {
		k := min(chunk, len(data))
		if _, err := z.Write(data[:k]); err != nil {
			t.Fatal(err)
		}
		data = data[k:]
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// The block-parallel stream must be a valid gzip member for every length, in particular at and
// around block boundaries (where the last block is empty or tiny), and must not depend on how the
// input was split into writes or on the number of cores.
func TestPgzipValidAndDeterministic(t *testing.T) {
	src := mixedData(11, 3*pgzipBlockSize+pgzipDictSize+5)
	for _, n := range []int{0, 1, pgzipDictSize - 1, pgzipBlockSize - 1, pgzipBlockSize, pgzipBlockSize + 1,
		2 * pgzipBlockSize, 2*pgzipBlockSize + pgzipDictSize, len(src)} {
		data := src[:n]
		a := pgzip(t, data, 1<<20)
		zr, err := gzip.NewReader(bytes.NewReader(a))
		if err != nil {
			t.Fatalf("len %d: %v", n, err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("len %d: round trip failed (%v, %d bytes back)", n, err, len(got))
		}
		if b := pgzip(t, data, 777); !bytes.Equal(a, b) {
			t.Fatalf("len %d: output depends on write sizes", n)
		}
		prev := runtime.GOMAXPROCS(1)
		c := pgzip(t, data, 1<<16)
		runtime.GOMAXPROCS(prev)
		if !bytes.Equal(a, c) {
			t.Fatalf("len %d: output depends on the number of cores", n)
		}
	}
	// It compresses: the mixed data is about three quarters text.
	if a := pgzip(t, src, 1<<20); len(a) > len(src)*6/10 {
		t.Errorf("compressed %d bytes to %d", len(src), len(a))
	}
}
