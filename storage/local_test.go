package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// storeContract exercises the Store interface; both implementations must pass it.
func storeContract(t *testing.T, s Store) {
	t.Helper()
	ctx := context.Background()
	put := func(key, body string) {
		t.Helper()
		if err := s.Put(ctx, key, strings.NewReader(body), int64(len(body))); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	put("p/runs/r1/out.txt", "hello")
	put("p/runs/r1/dir/b.csv", "1,2")
	put("p/runs/r1-x", "other run")
	put("p/archives/a.tar.gz", "archive")
	// Unknown size.
	if err := s.Put(ctx, "p/runs/r1/stream", io.MultiReader(strings.NewReader("str"), strings.NewReader("eam")), -1); err != nil {
		t.Fatal(err)
	}
	// Overwrite.
	put("p/runs/r1/out.txt", "hello again")

	rc, err := s.Get(ctx, "p/runs/r1/out.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "hello again" {
		t.Fatalf("get: %q", b)
	}
	info, err := s.Stat(ctx, "p/runs/r1/stream")
	if err != nil || info.Size != 6 || info.Key != "p/runs/r1/stream" || info.ModTime.IsZero() {
		t.Fatalf("stat: %+v %v", info, err)
	}
	for _, missing := range []string{"p/runs/r1/nope", "p/runs/r1"} {
		if _, err := s.Stat(ctx, missing); !errors.Is(err, ErrNotExist) {
			t.Errorf("stat %s: want ErrNotExist, got %v", missing, err)
		}
		if _, err := s.Get(ctx, missing); !errors.Is(err, ErrNotExist) {
			t.Errorf("get %s: want ErrNotExist, got %v", missing, err)
		}
	}
	list, err := s.List(ctx, "p/runs/r1/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, i := range list {
		keys = append(keys, i.Key)
	}
	want := "p/runs/r1/dir/b.csv p/runs/r1/out.txt p/runs/r1/stream"
	if strings.Join(keys, " ") != want {
		t.Fatalf("list p/runs/r1/: %v, want %s", keys, want)
	}
	list, _ = s.List(ctx, "p/runs/r1")
	if len(list) != 4 || list[3].Key != "p/runs/r1/stream" || list[0].Key != "p/runs/r1-x" {
		t.Fatalf("list p/runs/r1 (plain prefix, sorted): %+v", list)
	}
	if list, _ := s.List(ctx, "nothing/"); len(list) != 0 {
		t.Fatalf("list of missing prefix: %+v", list)
	}
	for _, bad := range []string{"../x", "/abs", "a//b", "a/./b", ""} {
		if err := s.Put(ctx, bad, strings.NewReader("x"), 1); err == nil {
			t.Errorf("put accepted bad key %q", bad)
		}
	}
}

// deletePrefixContract checks DeletePrefix: everything under the prefix goes, a neighbour whose
// key merely shares the characters stays, and an empty prefix is refused.
func deletePrefixContract(t *testing.T, s interface {
	Store
	DeletePrefix(ctx context.Context, prefix string) error
}) {
	t.Helper()
	ctx := context.Background()
	var keys []string
	for i := range 1100 { // more than one DeleteObjects request
		keys = append(keys, fmt.Sprintf("d/step/segments/%04d.ndjson", i))
	}
	keys = append(keys, "d/step/segments-x", "d/step/manifest.json")
	for _, k := range keys {
		if err := s.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeletePrefix(ctx, "d/step/segments/"); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx, "d/")
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, in := range list {
		left = append(left, in.Key)
	}
	if got := strings.Join(left, " "); got != "d/step/manifest.json d/step/segments-x" {
		t.Fatalf("after DeletePrefix: %s", got)
	}
	if err := s.DeletePrefix(ctx, "d/step/segments/"); err != nil {
		t.Fatalf("a missing prefix: %v", err)
	}
	if err := s.DeletePrefix(ctx, ""); err == nil {
		t.Fatal("an empty prefix was accepted")
	}
}

func TestLocalStore(t *testing.T) {
	dir := t.TempDir()
	s, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	storeContract(t, s)
	deletePrefixContract(t, s)
	// Nothing outside the root was created by the bad keys.
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "x")); err == nil {
		t.Fatal("a bad key escaped the root")
	}
}

func TestLocalPutIsAtomic(t *testing.T) {
	s, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A body that fails half way leaves no object.
	r := io.MultiReader(strings.NewReader("partial"), errReader{})
	if err := s.Put(ctx, "k", r, -1); err == nil {
		t.Fatal("failed body reported success")
	}
	if _, err := s.Stat(ctx, "k"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("partial object visible: %v", err)
	}
	// A short body is an error, not a truncated object.
	if err := s.Put(ctx, "k", strings.NewReader("abc"), 10); err == nil {
		t.Fatal("short body accepted")
	}
	if list, _ := s.List(ctx, ""); len(list) != 0 {
		t.Fatalf("temp files visible in listing: %+v", list)
	}
	// Concurrent writers of one key: every reader sees one complete version.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := bytes.Repeat([]byte{byte('a' + i)}, 1<<16)
			if err := s.Put(ctx, "same", bytes.NewReader(body), int64(len(body))); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	rc, err := s.Get(ctx, "same")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if len(b) != 1<<16 || bytes.Count(b, b[:1]) != len(b) {
		t.Fatal("object is a mix of concurrent writes")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(ctx, Config{Endpoint: "file://" + dir, Bucket: "bkt", Prefix: "team/a"})
	if err != nil {
		t.Fatal(err)
	}
	key := ArchiveKey("team/a", "nb", strings.Repeat("ab", 32))
	if err := s.Put(ctx, key, strings.NewReader("z"), 1); err != nil {
		t.Fatal(err)
	}
	// Keys are bucket-relative: the prefix is in the key, not added again by the store.
	want := filepath.Join(dir, "bkt", "team", "a", "archives", "nb-abababababababababab.tar.gz")
	if _, err := os.Stat(want); err != nil {
		t.Fatalf("object not at %s: %v", want, err)
	}
	for _, bad := range []Config{
		{Endpoint: "file://relative/dir"},
		{Endpoint: "ftp://x"},
		{Endpoint: ""},
		{Endpoint: "file://" + dir, Prefix: "../up"},
		{Endpoint: "file://" + dir, Bucket: "../up"},
	} {
		if _, err := Open(ctx, bad); err == nil {
			t.Errorf("Open(%+v) succeeded", bad)
		}
	}
}
