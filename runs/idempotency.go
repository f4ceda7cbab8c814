package runs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// IdempotencyTTL is how long the answer to a submission with an Idempotency-Key is kept.
const IdempotencyTTL = 24 * time.Hour

// MaxIdempotencyKey bounds the length of an Idempotency-Key.
const MaxIdempotencyKey = 255

// IdempotencyStore remembers the answers to submissions made with an Idempotency-Key, per API
// credential, for TTL, as one file per key under a directory of the data dir. A retried request
// (the client timed out, the connection dropped) gets the first answer back instead of creating a
// second run; a retry that arrives while the first request is still being processed waits for it.
// Only successful answers are kept: after a failure nothing was created, and a retry may try again.
type IdempotencyStore struct {
	dir string
	ttl time.Duration
	now func() time.Time

	mu        sync.Mutex
	inflight  map[string]chan struct{}
	lastSweep time.Time
}

// IdempotentAnswer is a stored answer.
type IdempotentAnswer struct {
	Status int    `json:"status"`
	Body   []byte `json:"body"`
	RunID  string `json:"run_id,omitempty"`
	// Fingerprint identifies the request the key was first used for.
	Fingerprint string    `json:"fingerprint"`
	CreatedAt   time.Time `json:"created_at"`
}

// NewIdempotencyStore opens (creating it, mode 0700) dir and removes expired entries. ttl <= 0
// means IdempotencyTTL.
func NewIdempotencyStore(dir string, ttl time.Duration) (*IdempotencyStore, error) {
	if ttl <= 0 {
		ttl = IdempotencyTTL
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("idempotency store: %w", err)
	}
	s := &IdempotencyStore{dir: dir, ttl: ttl, now: time.Now, inflight: map[string]chan struct{}{}}
	s.sweep()
	return s, nil
}

// CheckIdempotencyKey validates a key: 1 to 255 printable ASCII characters.
func CheckIdempotencyKey(key string) error {
	if key == "" || len(key) > MaxIdempotencyKey {
		return fmt.Errorf("%w: Idempotency-Key must be 1 to %d characters", ErrInvalid, MaxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return fmt.Errorf("%w: Idempotency-Key must be printable ASCII", ErrInvalid)
		}
	}
	return nil
}

// IdempotencyClaim is held by the one request that processes a key; it must call Commit (after
// success) or Release (after failure).
type IdempotencyClaim struct {
	s           *IdempotencyStore
	id          string
	fingerprint string
	done        chan struct{}
	once        sync.Once
}

// Begin looks up key in scope (a digest of the caller's credential). With a stored answer for the
// same request fingerprint it returns that answer; for a different request it fails with
// ErrConflict. Otherwise it waits while another request holds the key, then returns a claim for the
// caller to process the request under.
func (s *IdempotencyStore) Begin(ctx context.Context, scope, key, fingerprint string) (*IdempotentAnswer, *IdempotencyClaim, error) {
	if err := CheckIdempotencyKey(key); err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256([]byte(scope + "\x00" + key))
	id := hex.EncodeToString(sum[:])
	for {
		s.mu.Lock()
		wait, busy := s.inflight[id]
		if !busy {
			a, err := s.load(id)
			if err != nil {
				s.mu.Unlock()
				return nil, nil, err
			}
			if a != nil {
				s.mu.Unlock()
				if a.Fingerprint != fingerprint {
					return nil, nil, fmt.Errorf("%w: this Idempotency-Key was already used for a different request (keys are kept %s)", ErrConflict, s.ttl)
				}
				return a, nil, nil
			}
			c := &IdempotencyClaim{s: s, id: id, fingerprint: fingerprint, done: make(chan struct{})}
			s.inflight[id] = c.done
			s.mu.Unlock()
			return nil, c, nil
		}
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// Commit stores the answer and releases the key.
func (c *IdempotencyClaim) Commit(status int, body []byte, runID string) error {
	a := IdempotentAnswer{Status: status, Body: body, RunID: runID, Fingerprint: c.fingerprint, CreatedAt: c.s.now().UTC()}
	b, err := json.Marshal(a)
	if err == nil {
		tmp := filepath.Join(c.s.dir, c.id+".tmp")
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, filepath.Join(c.s.dir, c.id+".json"))
		}
	}
	c.Release()
	if err != nil {
		return fmt.Errorf("idempotency store: save answer: %w", err)
	}
	c.s.mu.Lock()
	due := c.s.now().Sub(c.s.lastSweep) > time.Hour
	c.s.mu.Unlock()
	if due {
		c.s.sweep()
	}
	return nil
}

// Release frees the key without storing an answer (the request failed); it is a no-op after Commit.
func (c *IdempotencyClaim) Release() {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.inflight, c.id)
		c.s.mu.Unlock()
		close(c.done)
	})
}

// load reads a stored answer; nil if there is none or it expired. The caller holds s.mu.
func (s *IdempotencyStore) load(id string) (*IdempotentAnswer, error) {
	p := filepath.Join(s.dir, id+".json")
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("idempotency store: %w", err)
	}
	var a IdempotentAnswer
	if json.Unmarshal(b, &a) != nil || s.now().Sub(a.CreatedAt) > s.ttl {
		os.Remove(p)
		return nil, nil
	}
	return &a, nil
}

// sweep removes expired answers (at startup, then at most hourly after a commit).
func (s *IdempotencyStore) sweep() {
	s.mu.Lock()
	s.lastSweep = s.now()
	s.mu.Unlock()
	entries, _ := os.ReadDir(s.dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil && s.now().Sub(info.ModTime()) > s.ttl {
			os.Remove(filepath.Join(s.dir, e.Name()))
		}
	}
}
