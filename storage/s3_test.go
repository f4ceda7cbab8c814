package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kfbridge/kfbridge/storage/s3test"
)

func s3Config(srv *s3test.Server, bucket string) Config {
	return Config{Endpoint: srv.Endpoint, Bucket: bucket, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, MaxRetries: 2}
}

func TestS3Store(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	// The bucket does not exist yet: Open creates it.
	st, err := Open(ctx, s3Config(srv, "kfb"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(srv.Dir, "kfb")); err != nil || !fi.IsDir() {
		t.Fatalf("bucket not created on the server: %v", err)
	}
	storeContract(t, st)
	s := st.(*S3)
	if s.Location() != srv.Endpoint+"/kfb" {
		t.Errorf("location %q", s.Location())
	}
	// Objects land under the expected key in the bucket.
	if b, err := os.ReadFile(filepath.Join(srv.Dir, "kfb", "p/runs/r1/out.txt")); err != nil || string(b) != "hello again" {
		t.Errorf("object not at its key on the server: %q %v", b, err)
	}

	// Presigned GET works without credentials, and only for the signed key.
	url, err := s.Presign(ctx, "p/runs/r1/out.txt", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello again" {
		t.Fatalf("presigned GET: %d %q", resp.StatusCode, body)
	}
	resp, err = http.Get(strings.Replace(url, "out.txt", "stream", 1))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Fatal("presigned URL worked for another key")
	}
	if _, err := s.Presign(ctx, "k", 30*24*time.Hour); err == nil {
		t.Error("presign accepted a ttl over 7 days")
	}

	// A multipart upload (larger than the part size) from a file, read back intact.
	s.partSize = 5 << 20
	data := mixedData(3, 12<<20+7)
	p := filepath.Join(t.TempDir(), "big")
	os.WriteFile(p, data, 0o644)
	f, _ := os.Open(p)
	defer f.Close()
	if err := s.Put(ctx, "big/file", f, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	// And a streaming one of unknown size.
	if err := s.Put(ctx, "big/stream", bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"big/file", "big/stream"} {
		rc, err := s.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("%s: content differs after multipart upload (%d bytes)", k, len(got))
		}
	}
	if err := s.Delete(ctx, "big/stream"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, "big/stream"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("deleted object: %v", err)
	}

	// Open of an existing bucket is fine too.
	if _, err := Open(ctx, s3Config(srv, "kfb")); err != nil {
		t.Fatal(err)
	}
}

func TestS3Errors(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "data")
	srv.CreateUser(t, "plain-user", "plain-user-secret", "user")
	ctx := context.Background()

	check := func(name string, cfg Config, class error, words ...string) {
		t.Helper()
		_, err := Open(ctx, cfg)
		if err == nil {
			t.Fatalf("%s: Open succeeded", name)
		}
		if !errors.Is(err, class) {
			t.Errorf("%s: error is not %v: %v", name, class, err)
		}
		msg := err.Error()
		t.Logf("%s: %s", name, msg)
		for _, w := range append(words, srv.Endpoint, cfg.Bucket) {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error lacks %q: %s", name, w, msg)
			}
		}
	}
	bad := s3Config(srv, "data")
	bad.SecretKey = "wrong-secret"
	check("wrong secret", bad, ErrBadCredentials, "AWS_SECRET_ACCESS_KEY")

	bad = s3Config(srv, "data")
	bad.AccessKey = "nobody"
	check("unknown access key", bad, ErrBadCredentials, "AWS_ACCESS_KEY_ID")

	// A user that may not create buckets asks for a missing one.
	user := Config{Endpoint: srv.Endpoint, Bucket: "newbucket", AccessKey: "plain-user", SecretKey: "plain-user-secret", MaxRetries: 2}
	check("bucket not permitted", user, ErrNoBucket, "create the bucket", "s3:CreateBucket")

	// Credentials from the environment (through Getenv).
	env := map[string]string{"AWS_ACCESS_KEY_ID": srv.AccessKey, "AWS_SECRET_ACCESS_KEY": srv.SecretKey}
	if _, err := Open(ctx, Config{Endpoint: srv.Endpoint, Bucket: "data", Getenv: func(k string) string { return env[k] }}); err != nil {
		t.Fatalf("env credentials: %v", err)
	}
	// No credentials anywhere.
	if _, err := Open(ctx, Config{Endpoint: srv.Endpoint, Bucket: "data"}); err == nil || !strings.Contains(err.Error(), "AWS_WEB_IDENTITY_TOKEN_FILE") {
		t.Fatalf("missing credentials: %v", err)
	}

	// The server goes away: connection refused, readable, bounded in time.
	st, err := Open(ctx, s3Config(srv, "data"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	start := time.Now()
	err = st.Put(ctx, "k", strings.NewReader("x"), 1)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") || !strings.Contains(err.Error(), "data/k") {
		t.Fatalf("stopped server: %v", err)
	}
	t.Logf("stopped server: %v (after %v)", err, time.Since(start))
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("retries took %v; they must be bounded", d)
	}
	if _, err := st.Stat(ctx, "k"); !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrNotExist) {
		t.Fatalf("stat on stopped server: %v", err)
	}
}

func TestS3IRSAConfigured(t *testing.T) {
	// IRSA exchanges the token with STS; versitygw has no STS, so only check that the provider is
	// chosen and reads the token file (an unreadable file must surface in the error).
	srv := s3test.Start(t)
	env := map[string]string{
		"AWS_ROLE_ARN":                "arn:aws:iam::123456789012:role/kfbridge",
		"AWS_WEB_IDENTITY_TOKEN_FILE": filepath.Join(t.TempDir(), "missing-token"),
	}
	_, err := Open(context.Background(), Config{Endpoint: srv.Endpoint, Bucket: "irsa-bucket", MaxRetries: 1,
		Getenv: func(k string) string { return env[k] }})
	if err == nil || !strings.Contains(err.Error(), "web identity token") {
		t.Fatalf("IRSA with a missing token file: %v", err)
	}
}
