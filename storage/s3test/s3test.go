// Package s3test starts a real S3 server (versitygw v1.8.0) for integration tests. It is a normal
// package so tests of several packages can share it; nothing outside tests imports it. It does not
// import storage, so storage's own tests can use it.
package s3test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Server is a running versitygw with one root account and an internal IAM (so tests can add
// restricted users).
type Server struct {
	// Endpoint is "http://127.0.0.1:<port>".
	Endpoint string
	// AccessKey and SecretKey are the root account's credentials.
	AccessKey, SecretKey string
	// Dir is the posix backend's directory: bucket B's objects are files under Dir/B.
	Dir string

	bin  string
	cmd  *exec.Cmd
	out  *syncBuffer
	once sync.Once
	done chan struct{}
}

// Binary returns the versitygw executable: on PATH, else $(go env GOPATH)/bin/versitygw. It returns
// "" if there is none.
func Binary() string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	for _, gp := range filepath.SplitList(gopath) {
		p := filepath.Join(gp, "bin", "versitygw")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// Start runs versitygw on a free loopback port with a fresh temporary root and waits until it
// answers. The server is killed when the test ends. Without versitygw the test is skipped, except
// under CI=true, where it fails.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "versitygw not installed (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var lastErr error
	// The free port is found by binding and releasing it, so another process may take it in between;
	// a few attempts make that race irrelevant.
	for range 3 {
		s, err := start(t, bin)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("s3test: %v", lastErr)
	return nil
}

func start(t testing.TB, bin string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	base := t.TempDir()
	dir := filepath.Join(base, "data")
	iam := filepath.Join(base, "iam")
	for _, d := range []string{dir, iam} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	s := &Server{
		Endpoint:  fmt.Sprintf("http://127.0.0.1:%d", port),
		AccessKey: "s3test-root",
		SecretKey: "s3test-root-secret-123",
		Dir:       dir,
		bin:       bin,
		out:       &syncBuffer{},
		done:      make(chan struct{}),
	}
	s.cmd = exec.Command(bin, "--port", fmt.Sprintf("127.0.0.1:%d", port),
		"--access", s.AccessKey, "--secret", s.SecretKey, "--iam-dir", iam, "--quiet", "posix", dir)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-s.done:
			return nil, fmt.Errorf("versitygw exited during startup: %s", s.out.String())
		default:
		}
		// Any HTTP answer (403 for an anonymous request) means it is serving.
		resp, err := client.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("versitygw did not answer on %s within 15s: %v\n%s", s.Endpoint, err, s.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (by its PID) and waits for it to exit, simulating a server that dies. It is
// idempotent and also runs at test cleanup.
func (s *Server) Stop() {
	s.once.Do(func() {
		if s.cmd.Process != nil {
			s.cmd.Process.Kill()
		}
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
		}
	})
}

// Output is what the server printed so far (for failure messages).
func (s *Server) Output() string { return s.out.String() }

// Client returns a minio client with the root credentials.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// CreateBucket creates a bucket owned by the root account.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("s3test: create bucket %s: %v", name, err)
	}
}

// CreateUser adds an account with the given versitygw role ("user" may not create buckets,
// "userplus" may, "admin" is root-like).
func (s *Server) CreateUser(t testing.TB, access, secret, role string) {
	t.Helper()
	cmd := exec.Command(s.bin, "admin", "--access", s.AccessKey, "--secret", s.SecretKey,
		"--endpoint-url", s.Endpoint, "create-user", "--access", access, "--secret", secret, "--role", role)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("s3test: create user %s: %v\n%s", access, err, out)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer collects the server's output from its two pipes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 1<<20 { // keep memory bounded if the server gets chatty
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
