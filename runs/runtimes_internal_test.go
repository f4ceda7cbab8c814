package runs

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// On volumes without hard links (SMB/Azure Files), create falls back to an exclusive create of the
// final file: it still stores the instance, still refuses a taken name, and leaves no temporary.
func TestCreateWithoutHardLinks(t *testing.T) {
	linkFile = func(string, string) error { return &os.LinkError{Op: "link", Err: syscall.EPERM} }
	t.Cleanup(func() { linkFile = os.Link })
	dir := t.TempDir()
	s, err := NewRuntimeStore(dir, RuntimeStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	im := RuntimeImage{Name: "img", Metadata: ImageMetadata{ImageName: "python:3.12"}}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.CreateImage(im)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	ok, conflicts := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrConflict):
			conflicts++
		default:
			t.Error(err)
		}
	}
	if ok != 1 || conflicts != 7 {
		t.Errorf("created %d, conflicts %d; want 1 and 7", ok, conflicts)
	}
	got, err := s.GetImage("img")
	if err != nil || got.Metadata.ImageName != "python:3.12" {
		t.Errorf("get = %+v, %v", got, err)
	}
	fi, err := os.Stat(filepath.Join(dir, SchemaspaceRuntimeImages, "img.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file: %v, mode %v", err, fi.Mode())
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, SchemaspaceRuntimeImages)); len(entries) != 1 {
		t.Errorf("%d entries, want 1 (no temporaries)", len(entries))
	}
}
