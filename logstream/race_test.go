package logstream

import (
	"context"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/storage"
)

// blockingArchive holds Manifest until released, to open the window in which a viewer's archive
// look-up has registered a placeholder for a step that is about to go live.
type blockingArchive struct {
	StoreArchive
	entered chan struct{}
	release chan struct{}
}

func (a blockingArchive) Manifest(ctx context.Context, runID, stepID string) (End, error) {
	close(a.entered)
	<-a.release
	return a.StoreArchive.Manifest(ctx, runID, stepID)
}

// Ensure lines appended while a viewer's archive look-up for the same (not yet archived) step is in
// flight are kept: the look-up finding nothing must not drop the step the writer is using.
func TestLiveStepDuringArchiveLookupKeepsLines(t *testing.T) {
	st, err := storage.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := blockingArchive{StoreArchive: StoreArchive{Store: st}, entered: make(chan struct{}), release: make(chan struct{})}
	s := New(Options{SpoolDir: t.TempDir(), Archive: a})
	defer s.Close()

	looked := make(chan error, 1)
	go func() {
		_, err := s.loadArchived(context.Background(), "r", "s")
		looked <- err
	}()
	<-a.entered
	appended := make(chan int64, 1)
	go func() {
		appended <- s.Append("r", "s", []Line{{Seq: 1, Stream: Stdout, Text: "one"}, {Seq: 2, Stream: Stdout, Text: "two"}})
	}()
	time.Sleep(50 * time.Millisecond) // let the writer reach the placeholder
	close(a.release)
	if err := <-looked; err != nil {
		t.Fatal(err)
	}
	if last := <-appended; last != 2 {
		t.Fatalf("Append returned last seq %d, want 2", last)
	}
	if got := s.LastSeq("r", "s"); got != 2 {
		t.Fatalf("store holds up to seq %d after the look-up, want 2 (lines orphaned)", got)
	}
	if got := s.Append("r", "s", []Line{{Seq: 3, Stream: Stdout, Text: "three"}}); got != 3 {
		t.Fatalf("a later append sees last seq %d, want 3", got)
	}
}
