package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/logstream"
	"github.com/kfbridge/kfbridge/runner"
	"github.com/kfbridge/kfbridge/storage"
)

// steadyLines prints about 1,000 lines a second for up to a minute.
const steadyLines = `import time
for i in range(1, 60001):
    print(f"line {i}", flush=True)
    if i % 50 == 0:
        time.sleep(0.05)
`

// Ensure the runner uploads NDJSON segments while the step runs even though every push is
// acknowledged, that they hold lines 1..N without a hole and byte for byte as archived, and that
// they are gone once the manifest is there.
func TestSegmentsUploadedWhilePushesAreHealthy(t *testing.T) {
	f := newStepFixture(t, `import time
for i in range(1, 3001):
    print(f"line {i}", flush=True)
    if i % 100 == 0:
        time.sleep(0.1)
`)
	svc := startService(t, serviceOptions{store: f.store})
	ctx := context.Background()
	segDir := storage.StepKey(f.runDir, testStep, logstream.SegmentsDir) + "/"
	manifestKey := storage.StepKey(f.runDir, testStep, logstream.ManifestName)

	// Watch the store while the step runs: every segment seen before the manifest exists is
	// read at once (they are deleted at the end).
	type seg struct {
		first, last int64
		body        []byte
	}
	var mu sync.Mutex
	segs := map[string]seg{}
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := f.store.Stat(ctx, manifestKey); err == nil {
				continue // the step has ended: what is listed now proves nothing
			}
			infos, _ := f.store.List(ctx, segDir)
			for _, in := range infos {
				mu.Lock()
				_, seen := segs[in.Key]
				mu.Unlock()
				first, last, ok := logstream.ParseSegmentName(path.Base(in.Key))
				if seen || !ok {
					continue
				}
				rc, err := f.store.Get(ctx, in.Key)
				if err != nil {
					continue
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					continue
				}
				mu.Lock()
				segs[in.Key] = seg{first, last, b}
				mu.Unlock()
			}
		}
	}()
	code, took := f.runStep(t, svc.URL)
	close(stop)
	<-watched
	if code != 0 {
		t.Fatalf("step exit code %d", code)
	}
	want, _, end := f.archived(t)
	// The push path was healthy throughout: the service holds the whole log by push alone.
	if e := svc.Logs.StepEnd(testRun, testStep); e == nil || e.FinalSeq != end.FinalSeq || svc.Logs.LastSeq(testRun, testStep) != end.FinalSeq {
		t.Fatalf("service: end %+v, %d lines; manifest %+v", e, svc.Logs.LastSeq(testRun, testStep), end)
	}
	var list []seg
	for _, s := range segs {
		list = append(list, s)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].first < list[j].first })
	var covered int64
	for _, s := range list {
		if s.first != covered+1 {
			t.Fatalf("segments seen while the step ran: %d..%d follows %d (a hole or an overlap)", s.first, s.last, covered)
		}
		lines := splitLines(s.body)
		if int64(len(lines)) != s.last-s.first+1 || s.last > int64(len(want)) {
			t.Fatalf("segment %d..%d holds %d lines", s.first, s.last, len(lines))
		}
		for i, l := range lines {
			if !bytes.Equal(l, want[s.first-1+int64(i)]) {
				t.Fatalf("segment %d..%d, line %d differs from the archive:\n%s\n%s", s.first, s.last, s.first+int64(i), l, want[s.first-1+int64(i)])
			}
		}
		covered = s.last
	}
	// The step prints for about 3 s and a segment leaves about a second after its oldest line:
	// at least the first half of the log was in the store before the step ended.
	if covered < end.FinalSeq/2 {
		t.Fatalf("segments uploaded before the manifest cover lines 1..%d of %d", covered, end.FinalSeq)
	}
	if left, err := f.store.List(ctx, segDir); err != nil || len(left) != 0 {
		t.Fatalf("segments left after the manifest: %d (%v)", len(left), err)
	}
	t.Logf("step took %s; %d segments covered lines 1..%d of %d before the step ended", took.Round(time.Millisecond), len(list), covered, end.FinalSeq)
}

// TestHelperStepRunner is the step runner as a process of its own, for the tests that kill it:
// run by them with KFBRIDGE_HELPER_STEP set, it does nothing otherwise.
func TestHelperStepRunner(t *testing.T) {
	if os.Getenv("KFBRIDGE_HELPER_STEP") == "" {
		return
	}
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv("KFBRIDGE_HELPER_STEP")), &args); err != nil {
		os.Exit(2)
	}
	os.Exit(runner.Main(context.Background(), args, os.Getenv, nil, io.Discard, os.Stderr))
}

// Ensure that when the runner dies (SIGKILL: no end record, no final archive) while its pushes are
// healthy, and the service is then replaced by a new process with an empty store, the new service
// still serves the step's lines from the object-store segments, up to what the runner produced
// about a second before its death (the segment cadence; the test allows 2 s). Before segments
// were written regardless of the push path, the store held nothing for the step.
func TestRunnerKilledWhilePushingServedFromSegmentsAfterServiceRestart(t *testing.T) {
	f := newStepFixture(t, steadyLines)
	a := startService(t, serviceOptions{store: f.store})
	args := []string{"kfbridge-step", "--cos-endpoint", "file://" + f.storeDir, "--cos-bucket", "b",
		"--cos-directory", f.runDir, "--cos-dependencies-archive", filepath.Base(f.key), "--archive-key", f.key,
		"--file", "job.py", "--run-id", testRun, "--step-id", testStep, "--pipeline-name", "p", "--push-url", a.URL}
	argsJSON, _ := json.Marshal(args)
	var stderr bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStepRunner$", "-test.count=1")
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "KFBRIDGE_HELPER_STEP="+string(argsJSON), "KFBRIDGE_PUSH_TOKEN="+pushToken)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})

	// What the first service holds over time, by push.
	type sample struct {
		at   time.Time
		held int64
	}
	var samples []sample
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		held := a.Logs.LastSeq(testRun, testStep)
		samples = append(samples, sample{time.Now(), held})
		if held >= 4000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the step pushed only %d lines in 30 s; runner stderr:\n%s", held, stderr.String())
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	cmd.Wait()
	// Everything the runner produced up to its death, as the first service got it by push.
	time.Sleep(100 * time.Millisecond)
	pushed := readNDJSON(t, a.URL)
	a.kill()
	var bound int64 // held by push 2 s before the kill
	for _, s := range samples {
		if s.at.After(killed.Add(-2 * time.Second)) {
			break
		}
		bound = s.held
	}
	if bound < 1000 {
		t.Fatalf("only %d lines 2 s before the kill: the step was too slow to measure anything", bound)
	}

	// A new service process: empty memory, the same object store.
	b := startService(t, serviceOptions{archive: true, store: f.store,
		opts: logstream.Options{TailInterval: 50 * time.Millisecond, PushQuiet: 50 * time.Millisecond}})
	var served [][]byte
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		served = readNDJSON(t, b.URL)
		if int64(len(served)) >= bound {
			// Let the tail take whatever else the store holds.
			time.Sleep(300 * time.Millisecond)
			served = readNDJSON(t, b.URL)
			break
		}
	}
	if int64(len(served)) < bound {
		t.Fatalf("the restarted service serves %d lines; the first one held %d by push 2 s before the runner was killed (%d at its death)",
			len(served), bound, len(pushed))
	}
	if len(served) > len(pushed) {
		t.Fatalf("the restarted service serves %d lines, more than the runner pushed (%d)", len(served), len(pushed))
	}
	sameLines(t, "restarted service (from segments)", served, pushed[:len(served)])
	t.Logf("runner killed holding %d pushed lines; the restarted service serves lines 1..%d from segments (%d lost, bound %d = 2 s before the kill)",
		len(pushed), len(served), len(pushed)-len(served), bound)
}

// Ensure a service restarted mid-step with an empty store, which serves the object store, first
// serves the running step from its segments and then continues with the runner's pushes (resent
// from the seq it reports): the two paths overlap and the log ends whole, with every line once and
// in order. The tail polls as often as it can here, so segments and pushes interleave.
func TestServiceRestartMidRunServesSegmentsThenPushes(t *testing.T) {
	f := newStepFixture(t, `import time
for i in range(1, 8001):
    print(f"line {i}", flush=True)
    if i % 200 == 0:
        time.sleep(0.1)
`)
	a := startService(t, serviceOptions{store: f.store})
	addr := a.ln.Addr().String()
	var b *service
	var fromStore int64
	restarted := make(chan struct{})
	stepDone := make(chan struct{})
	go func() {
		defer close(restarted)
		for a.Logs.LastSeq(testRun, testStep) < 1000 {
			select {
			case <-stepDone:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		a.kill()
		// Down for longer than the segment cadence: the store is ahead of the new service.
		time.Sleep(1500 * time.Millisecond)
		b = startService(t, serviceOptions{addr: addr, archive: true, store: f.store,
			opts: logstream.Options{TailInterval: 20 * time.Millisecond, PushQuiet: 20 * time.Millisecond}})
		// A viewer asks before the runner's next push (it is backing off): the step is loaded
		// from its segments.
		fromStore = int64(len(readNDJSON(t, b.URL)))
		for deadline := time.Now().Add(2 * time.Second); fromStore == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			fromStore = b.Logs.LastSeq(testRun, testStep)
		}
	}()
	code, took := f.runStep(t, a.URL)
	close(stepDone)
	<-restarted
	if b == nil {
		t.Fatal("the step ended before the service held 1,000 lines: nothing was restarted")
	}
	if code != 0 {
		t.Fatalf("step exit code %d", code)
	}
	if fromStore == 0 {
		t.Fatal("the restarted service held nothing of the running step 2 s after it started")
	}
	want, _, end := f.archived(t)
	deadline := time.Now().Add(10 * time.Second)
	for b.Logs.StepEnd(testRun, testStep) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if e := b.Logs.StepEnd(testRun, testStep); e == nil || e.FinalSeq != end.FinalSeq {
		t.Fatalf("restarted service: end %+v, held %d lines; manifest %+v", e, b.Logs.LastSeq(testRun, testStep), end)
	}
	sameLines(t, "restarted service", readNDJSON(t, b.URL), want)
	t.Logf("step took %s; the restarted service held %d lines at the first read, then all %d", took.Round(time.Millisecond), fromStore, len(want))
}
