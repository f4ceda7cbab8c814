package storage

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Error classes of S3 failures; S3Error unwraps to one of them (and ErrNotExist for NoSuchKey) so
// callers can branch with errors.Is and users get a readable message.
var (
	ErrAccessDenied   = errors.New("access denied")
	ErrBadCredentials = errors.New("invalid credentials")
	ErrNoBucket       = errors.New("bucket does not exist")
	ErrUnreachable    = errors.New("S3 endpoint unreachable")
)

// S3Error is a failed S3 operation, naming what failed and why in words a user can act on.
type S3Error struct {
	Op       string // "put", "get", "stat", "list", "presign", "create bucket", …
	Endpoint string
	Bucket   string
	Key      string // may be empty
	Code     string // S3 error code, if the server sent one
	Hint     string // readable explanation
	Err      error  // the underlying error
	class    error  // one of the Err* classes, or nil
}

func (e *S3Error) Error() string {
	where := e.Endpoint + "/" + e.Bucket
	if e.Key != "" {
		where += "/" + e.Key
	}
	msg := fmt.Sprintf("s3 %s %s: ", e.Op, where)
	if e.Hint != "" {
		msg += e.Hint + ": "
	}
	return msg + e.Err.Error()
}

// Unwrap returns the error class (ErrAccessDenied, ErrNotExist, …) and the cause.
func (e *S3Error) Unwrap() []error {
	if e.class != nil {
		return []error{e.class, e.Err}
	}
	return []error{e.Err}
}

// S3 is a Store on an S3-compatible server (MinIO, AWS S3, versitygw, …). Keys are relative to
// the bucket root (see Config).
type S3 struct {
	client   *minio.Client
	endpoint string // scheme://host[:port], for messages
	bucket   string
	region   string
	partSize uint64
}

var _ Store = (*S3)(nil)

// NewS3 connects to the S3 endpoint of cfg, checks the bucket and creates it when it is missing.
func NewS3(ctx context.Context, cfg Config) (*S3, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("s3: invalid endpoint %q: want http(s)://host[:port]", cfg.Endpoint)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("s3: endpoint %q must not have a path; put the bucket in the bucket setting", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, fmt.Errorf("s3 %s: no bucket configured", cfg.Endpoint)
	}
	endpoint := u.Scheme + "://" + u.Host
	region := cfg.Region
	if region == "" {
		region = cfg.getenv("AWS_REGION")
	}
	if region == "" {
		region = cfg.getenv("AWS_DEFAULT_REGION")
	}
	creds, err := s3Credentials(cfg, endpoint, region)
	if err != nil {
		return nil, fmt.Errorf("s3 %s/%s: %w", endpoint, cfg.Bucket, err)
	}
	retries := cfg.MaxRetries
	if retries <= 0 {
		retries = 4
	}
	tr, err := minio.DefaultTransport(u.Scheme == "https")
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", endpoint, err)
	}
	// Fail fast on an unreachable endpoint instead of minio's long default dial timeout; retries
	// with backoff cover short outages.
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.ResponseHeaderTimeout = 2 * time.Minute
	client, err := minio.New(u.Host, &minio.Options{
		Creds:      creds,
		Secure:     u.Scheme == "https",
		Region:     region,
		Transport:  tr,
		MaxRetries: retries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 %s: %w", endpoint, err)
	}
	partSize := cfg.PartSize
	if partSize == 0 {
		partSize = 16 << 20
	}
	s := &S3{client: client, endpoint: endpoint, bucket: cfg.Bucket, region: region, partSize: partSize}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.ensureBucket(cctx); err != nil {
		return nil, err
	}
	return s, nil
}

// s3Credentials picks static keys from cfg, then AWS_* env keys, then IRSA web identity.
func s3Credentials(cfg Config, endpoint, region string) (*credentials.Credentials, error) {
	if cfg.AccessKey != "" {
		return credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""), nil
	}
	if ak := cfg.getenv("AWS_ACCESS_KEY_ID"); ak != "" {
		return credentials.NewStaticV4(ak, cfg.getenv("AWS_SECRET_ACCESS_KEY"), cfg.getenv("AWS_SESSION_TOKEN")), nil
	}
	role, tokenFile := cfg.getenv("AWS_ROLE_ARN"), cfg.getenv("AWS_WEB_IDENTITY_TOKEN_FILE")
	if role != "" && tokenFile != "" {
		sts := cfg.getenv("AWS_STS_ENDPOINT")
		if sts == "" {
			sts = stsEndpoint(endpoint, region)
		}
		return credentials.NewSTSWebIdentity(sts, func() (*credentials.WebIdentityToken, error) {
			// Re-read on every refresh: the kubelet rotates the projected token.
			tok, err := os.ReadFile(tokenFile)
			if err != nil {
				return nil, fmt.Errorf("read web identity token (AWS_WEB_IDENTITY_TOKEN_FILE): %w", err)
			}
			return &credentials.WebIdentityToken{Token: strings.TrimSpace(string(tok))}, nil
		}, func(i *credentials.STSWebIdentity) {
			i.RoleARN = role
		})
	}
	return nil, errors.New("no S3 credentials: set an access key in the configuration, " +
		"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE (IRSA)")
}

// stsEndpoint is where web-identity tokens are exchanged: AWS's regional STS for AWS S3, otherwise
// the S3 endpoint itself (MinIO serves AssumeRoleWithWebIdentity there).
func stsEndpoint(endpoint, region string) string {
	if strings.Contains(endpoint, "amazonaws.com") {
		if region == "" {
			return "https://sts.amazonaws.com"
		}
		if strings.HasPrefix(region, "cn-") {
			return "https://sts." + region + ".amazonaws.com.cn"
		}
		return "https://sts." + region + ".amazonaws.com"
	}
	return endpoint
}

func (s *S3) ensureBucket(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.wrap("check bucket", "", err)
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region})
	if err == nil {
		return nil
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) && (er.Code == "BucketAlreadyOwnedByYou" || er.Code == "BucketAlreadyExists") {
		return nil // created concurrently by someone else with the same credentials
	}
	e := s.wrap("create bucket", "", err).(*S3Error)
	if errors.Is(e, ErrAccessDenied) {
		e.Hint = "bucket does not exist and these credentials may not create it; create the bucket or grant s3:CreateBucket"
		e.class = ErrNoBucket
	}
	return e
}

// Location implements Store: endpoint/bucket, so Location()+"/"+key names an object.
func (s *S3) Location() string { return s.endpoint + "/" + s.bucket }

// Bucket is the store's bucket.
func (s *S3) Bucket() string { return s.bucket }

// Put implements Store. PUTs are atomic in S3: the object appears only when the upload is
// complete. Bodies larger than the part size go up as concurrent multipart uploads; when r is an
// io.ReaderAt (a file) the parts are read directly from it.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := CheckKey(key); err != nil {
		return fmt.Errorf("s3 put %s: %w", s.Location(), err)
	}
	_, err := s.client.PutObject(ctx, s.bucket, key, r, size, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    s.partSize,
		NumThreads:  4,
	})
	if err != nil {
		return s.wrap("put", key, err)
	}
	return nil
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := CheckKey(key); err != nil {
		return nil, fmt.Errorf("s3 get %s: %w", s.Location(), err)
	}
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	// GetObject is lazy; Stat sends the request so a missing object is reported here.
	if _, err := obj.Stat(); err != nil {
		obj.Close()
		return nil, s.wrap("get", key, err)
	}
	return obj, nil
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := CheckKey(key); err != nil {
		return Info{}, fmt.Errorf("s3 stat %s: %w", s.Location(), err)
	}
	oi, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, s.wrap("stat", key, err)
	}
	return Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// List implements Store.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	out := []Info{}
	for oi := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, s.wrap("list", prefix+"*", oi.Err)
		}
		if strings.HasSuffix(oi.Key, "/") { // directory marker objects are not files
			continue
		}
		out = append(out, Info{Key: oi.Key, Size: oi.Size, ModTime: oi.LastModified})
	}
	if err := ctx.Err(); err != nil {
		return nil, s.wrap("list", prefix+"*", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes the object at key; a missing object is not an error.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return fmt.Errorf("s3 delete %s: %w", s.Location(), err)
	}
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return s.wrap("delete", key, err)
	}
	return nil
}

// DeletePrefix removes every object whose key starts with prefix, up to 1,000 per request
// (DeleteObjects), so the hundreds of segments of a long step go in a few round trips.
func (s *S3) DeletePrefix(ctx context.Context, prefix string) error {
	if prefix == "" {
		return fmt.Errorf("s3 delete %s: refusing to delete the whole bucket", s.Location())
	}
	infos, err := s.List(ctx, prefix)
	if err != nil {
		return err
	}
	objects := make(chan minio.ObjectInfo)
	go func() {
		defer close(objects)
		for _, in := range infos {
			select {
			case objects <- minio.ObjectInfo{Key: in.Key}:
			case <-ctx.Done():
				return
			}
		}
	}()
	var errs []error
	for e := range s.client.RemoveObjects(ctx, s.bucket, objects, minio.RemoveObjectsOptions{}) {
		// Keep a few: one cause repeated for every key says nothing more.
		if len(errs) < 3 {
			errs = append(errs, s.wrap("delete", e.ObjectName, e.Err))
		}
	}
	return errors.Join(errs...)
}

// Presign returns a URL that GETs the object at key without credentials for ttl (1 s to 7 days).
// Signing is local; the object's existence is not checked.
func (s *S3) Presign(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", fmt.Errorf("s3 presign %s: %w", s.Location(), err)
	}
	if ttl < time.Second || ttl > 7*24*time.Hour {
		return "", fmt.Errorf("s3 presign %s/%s: ttl %v outside 1s..7d", s.Location(), key, ttl)
	}
	u, err := s.client.PresignedGetObject(ctx, s.bucket, key, ttl, nil)
	if err != nil {
		return "", s.wrap("presign", key, err)
	}
	return u.String(), nil
}

// wrap turns a minio or network error into an *S3Error with a readable hint.
func (s *S3) wrap(op, key string, err error) error {
	e := &S3Error{Op: op, Endpoint: s.endpoint, Bucket: s.bucket, Key: key, Err: err}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		e.Code = er.Code
	}
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		// The cause says it all.
	case e.Code == "NoSuchKey" || (e.Code == "" && er.StatusCode == http.StatusNotFound && key != ""):
		e.class = ErrNotExist
		e.Hint = "object does not exist"
	case e.Code == "NoSuchBucket":
		e.class = ErrNoBucket
		e.Hint = "bucket does not exist"
	case e.Code == "InvalidAccessKeyId":
		e.class = ErrBadCredentials
		e.Hint = "the access key is not known to the server (check AWS_ACCESS_KEY_ID or the configured access key)"
	case e.Code == "SignatureDoesNotMatch":
		e.class = ErrBadCredentials
		e.Hint = "the secret key does not match the access key (check AWS_SECRET_ACCESS_KEY or the configured secret key)"
	case e.Code == "AccessDenied" || (e.Code == "" && er.StatusCode == http.StatusForbidden):
		e.class = ErrAccessDenied
		e.Hint = "access denied: the credentials are valid but not allowed to " + op + " here (check the bucket policy or IAM role)"
		if op == "check bucket" {
			e.Hint += "; checking a bucket needs s3:ListBucket"
		}
	case er.StatusCode >= 500:
		e.Hint = fmt.Sprintf("the S3 server kept failing (HTTP %d) through the allowed retries", er.StatusCode)
	case errors.Is(err, syscall.ECONNREFUSED):
		e.class = ErrUnreachable
		e.Hint = "connection refused: is the S3 server running and listening at " + s.endpoint + "?"
	case isDNSError(err):
		e.class = ErrUnreachable
		e.Hint = "cannot resolve the endpoint's host name"
	case isTLSError(err):
		e.class = ErrUnreachable
		e.Hint = "TLS handshake failed (wrong scheme, or a certificate the system does not trust)"
	case isNetError(err):
		e.class = ErrUnreachable
		e.Hint = "network error talking to the S3 server"
	}
	return e
}

func isDNSError(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de)
}

func isTLSError(err error) bool {
	var re tls.RecordHeaderError
	var ce *tls.CertificateVerificationError
	return errors.As(err, &re) || errors.As(err, &ce)
}

func isNetError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
