package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	deletePrefixContract(t, s)
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

	// The bucket disappears after Open.
	gone := s3Config(srv, "gone")
	stGone, err := Open(ctx, gone)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Client(t).RemoveBucket(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := stGone.Put(ctx, "k", strings.NewReader("x"), 1); !errors.Is(err, ErrNoBucket) || !strings.Contains(err.Error(), "gone/k") {
		t.Fatalf("put into a removed bucket: %v", err)
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

// flakyProxy forwards to the S3 server, except that it answers the next n requests (n set through
// the returned counter) with 503 SlowDown, as an overloaded S3 front end would. total counts all
// requests.
func flakyProxy(t *testing.T, target string) (ts *httptest.Server, fail, total *atomic.Int32) {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	fail, total = &atomic.Int32{}, &atomic.Int32{}
	ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		total.Add(1)
		if fail.Add(-1) >= 0 {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts, fail, total
}

func TestS3RetriesTransientErrors(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	proxy, fail, total := flakyProxy(t, srv.Endpoint)
	cfg := s3Config(srv, "retry")
	cfg.Endpoint, cfg.MaxRetries = proxy.URL, 4

	// Every operation survives two transient failures in a row (bounded retries with backoff).
	fail.Store(2)
	st, err := Open(ctx, cfg) // bucket check and creation
	if err != nil {
		t.Fatalf("open through a flaky front end: %v", err)
	}
	fail.Store(2)
	if err := st.Put(ctx, "obj", strings.NewReader("payload"), 7); err != nil {
		t.Fatalf("put through a flaky front end: %v", err)
	}
	fail.Store(2)
	before := total.Load()
	rc, err := st.Get(ctx, "obj")
	if err != nil {
		t.Fatalf("get through a flaky front end: %v", err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "payload" || total.Load()-before < 3 {
		t.Fatalf("get: %q after %d requests", b, total.Load()-before)
	}

	// Without retries the same failure surfaces, with the server's words and the object's name.
	cfg.MaxRetries = 1
	st1, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fail.Store(1)
	_, err = st1.Stat(ctx, "obj")
	if err == nil || !strings.Contains(err.Error(), proxy.URL+"/retry/obj") {
		t.Fatalf("failing front end without retries: %v", err)
	}
	t.Logf("without retries: %v", err)
}

func TestS3IRSA(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "irsa")
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("projected-sa-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Nothing here runs a real STS, so a minimal one exchanges the projected token for the S3
	// server's keys after checking what IRSA must send.
	var gotToken, gotRole string
	sts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.Form.Get("Action") != "AssumeRoleWithWebIdentity" {
			http.Error(w, "bad action", 400)
			return
		}
		gotToken, gotRole = r.Form.Get("WebIdentityToken"), r.Form.Get("RoleArn")
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, `<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials>`+
			`<AccessKeyId>`+srv.AccessKey+`</AccessKeyId><SecretAccessKey>`+srv.SecretKey+`</SecretAccessKey><SessionToken></SessionToken>`+
			`<Expiration>`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>`)
	}))
	defer sts.Close()
	env := map[string]string{
		"AWS_ROLE_ARN":                "arn:aws:iam::123456789012:role/kfbridge",
		"AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile,
		"AWS_STS_ENDPOINT":            sts.URL,
	}
	st, err := Open(context.Background(), Config{Endpoint: srv.Endpoint, Bucket: "irsa", Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	if gotToken != "projected-sa-token" || gotRole != env["AWS_ROLE_ARN"] {
		t.Fatalf("STS got token %q role %q", gotToken, gotRole)
	}
	if err := st.Put(context.Background(), "k", strings.NewReader("v"), 1); err != nil {
		t.Fatal(err)
	}
}
