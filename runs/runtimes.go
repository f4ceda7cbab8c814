package runs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/kfbridge/kfbridge/kfp"
)

// Runtime configurations and runtime images live in one store with two faces: kfbridge's own
// /api/v1/runtimes and /api/v1/runtime-images, and Elyra's /elyra/metadata/{runtimes,runtime-images}.
// Both speak Elyra's instance shape {name, display_name, schema_name, metadata:{…}}, and the files
// use Elyra's layout (<metadata dir>/<schemaspace>/<name>.json holding the instance without its
// name), so Elyra's existing metadata files can be imported, or the store pointed at Elyra's
// metadata directory.

// Elyra schemaspaces, schema names and runtime types.
const (
	SchemaspaceRuntimes      = "runtimes"
	SchemaspaceRuntimeImages = "runtime-images"
	// SchemaKFP is Elyra's schema of Kubeflow Pipelines runtimes.
	SchemaKFP = "kfp"
	// SchemaLocal is the schema of kfbridge's built-in local runtime (Elyra has no instance for
	// it: local is implied there).
	SchemaLocal = "local"
	// SchemaRuntimeImage is Elyra's schema of runtime images.
	SchemaRuntimeImage = "runtime-image"

	RuntimeTypeKFP   = "KUBEFLOW_PIPELINES"
	RuntimeTypeLocal = "LOCAL"

	// LocalRuntimeName names the built-in local runtime: always listed, never stored, not
	// updatable or deletable.
	LocalRuntimeName = "local"
)

// SecretPlaceholder is what every read path returns in place of a stored secret (api_password,
// cos_password). Sending it back on an update keeps the stored value, so a client (Elyra's
// runtime form included) can round-trip an instance without ever holding the secret. A secret
// that is not set reads as "".
const SecretPlaceholder = "********"

// Cloud object storage auth types (Elyra's cos_auth_type).
const (
	COSAuthUserCredentials  = "USER_CREDENTIALS"
	COSAuthKubernetesSecret = "KUBERNETES_SECRET"
	COSAuthIRSA             = "AWS_IAM_ROLES_FOR_SERVICE_ACCOUNTS"
)

// EngineArgo is the only Kubeflow Pipelines engine (Elyra dropped Tekton).
const EngineArgo = "Argo"

// ErrBuiltin is wrapped when a request would change the built-in local runtime. It wraps
// ErrConflict, so it maps to 409 unless an API (Elyra's answers 403) checks for it first.
var ErrBuiltin = fmt.Errorf("built-in runtime: %w", ErrConflict)

// RuntimeConfig is a runtime configuration: an Elyra metadata instance of the runtimes
// schemaspace (schema kfp), or the built-in local runtime (schema local).
type RuntimeConfig struct {
	Name        string          `json:"name"`
	DisplayName string          `json:"display_name"`
	SchemaName  string          `json:"schema_name"`
	Metadata    RuntimeMetadata `json:"metadata"`
}

// RuntimeMetadata holds a runtime's settings: Elyra's kfp.json fields plus kfbridge's
// api_version, ca_bundle_path and runner_image (Elyra's schema allows additional properties, so
// an instance written here still loads in Elyra).
type RuntimeMetadata struct {
	RuntimeType string   `json:"runtime_type,omitempty"`
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags,omitempty"`

	// APIEndpoint is the KFP API base URL, e.g. https://kubeflow.example.com/pipeline;
	// PublicAPIEndpoint, when set, is used for links shown to users (run_url).
	APIEndpoint       string `json:"api_endpoint,omitempty"`
	PublicAPIEndpoint string `json:"public_api_endpoint,omitempty"`
	// UserNamespace is the Kubeflow profile namespace (multi-user KFP).
	UserNamespace string `json:"user_namespace,omitempty"`
	// APIVersion is kfp.V1Beta1, kfp.V2Beta1 or kfp.Auto (the default).
	APIVersion string `json:"api_version,omitempty"`
	// Engine is always EngineArgo.
	Engine string `json:"engine,omitempty"`
	// AuthType is one of kfp's AuthType names (Elyra's, plus EXISTING_SESSION_COOKIE).
	// api_password carries the Dex password, the bearer token or the session cookie value;
	// api_username the Dex login, or the session cookie's name (default authservice_session).
	AuthType    string `json:"auth_type,omitempty"`
	APIUsername string `json:"api_username,omitempty"`
	APIPassword string `json:"api_password,omitempty"` // secret
	// CABundlePath is a PEM file of extra CAs for the KFP endpoint (absolute path).
	CABundlePath string `json:"ca_bundle_path,omitempty"`

	// COSEndpoint is the S3/MinIO endpoint (scheme://host[:port]) as both kfbridge and the
	// pipeline pods reach it; PublicCOSEndpoint is shown to users (object_storage_url).
	COSEndpoint       string `json:"cos_endpoint,omitempty"`
	PublicCOSEndpoint string `json:"public_cos_endpoint,omitempty"`
	COSBucket         string `json:"cos_bucket,omitempty"`
	// COSAuthType is USER_CREDENTIALS (default), KUBERNETES_SECRET or
	// AWS_IAM_ROLES_FOR_SERVICE_ACCOUNTS. With KUBERNETES_SECRET the pods read the keys from the
	// Secret COSSecret; cos_username/cos_password, if set, are what kfbridge itself uploads
	// with (otherwise its own AWS_* environment).
	COSAuthType     string `json:"cos_auth_type,omitempty"`
	COSUsername     string `json:"cos_username,omitempty"`
	COSPassword     string `json:"cos_password,omitempty"` // secret
	COSSecret       string `json:"cos_secret,omitempty"`
	COSObjectPrefix string `json:"cos_object_prefix,omitempty"`

	// RunnerImage is the image holding /usr/local/bin/kfbridge-step; empty means the server's
	// default (RuntimeStoreOptions.DefaultRunnerImage), filled in by RuntimeWithSecrets.
	RunnerImage string `json:"runner_image,omitempty"`
}

// RuntimeImage is an Elyra runtime-images instance: a container image offered for nodes.
type RuntimeImage struct {
	Name        string        `json:"name"`
	DisplayName string        `json:"display_name"`
	SchemaName  string        `json:"schema_name"`
	Metadata    ImageMetadata `json:"metadata"`
}

// ImageMetadata holds Elyra's runtime-image.json fields.
type ImageMetadata struct {
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	ImageName   string   `json:"image_name"`
	// PullPolicy is Always, IfNotPresent or Never; empty leaves the Kubernetes default.
	PullPolicy string `json:"pull_policy,omitempty"`
	// PullSecret names a Kubernetes Secret with registry credentials (a name, not a secret).
	PullSecret string `json:"pull_secret,omitempty"`
}

// FieldError is one invalid field. Field is the JSON path, e.g. "metadata.api_endpoint".
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError lists every invalid field of an instance; it wraps ErrInvalid. Messages never
// quote the value of a secret field.
type ValidationError struct {
	Name   string
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	if e.Name != "" {
		fmt.Fprintf(&b, "%s %q: ", ErrInvalid, e.Name)
	} else {
		fmt.Fprintf(&b, "%s: ", ErrInvalid)
	}
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Field + ": " + f.Message)
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// RuntimeStoreOptions configure a RuntimeStore.
type RuntimeStoreOptions struct {
	// DefaultRunnerImage fills an empty runner_image in RuntimeWithSecrets.
	DefaultRunnerImage string
}

// RuntimeStore keeps runtime configurations and runtime images as JSON files under one metadata
// directory. Every call reads the files afresh, so edits made by Elyra (or by hand) in the same
// directory are seen at once. Writes are atomic (temporary file + rename, 0600). It is safe for
// concurrent use.
type RuntimeStore struct {
	dir  string
	opts RuntimeStoreOptions
	mu   sync.Mutex // serializes read-modify-write sequences within this process
}

// NewRuntimeStore opens (creating it if needed, mode 0700) the metadata directory dir, usually
// <data dir>/metadata, or Jupyter's <data dir>/metadata to share instances with Elyra.
func NewRuntimeStore(dir string, opts RuntimeStoreOptions) (*RuntimeStore, error) {
	if dir == "" {
		// Relative to the working directory would scatter secrets wherever the process started.
		return nil, errors.New("runtime store: no metadata directory configured")
	}
	for _, space := range []string{SchemaspaceRuntimes, SchemaspaceRuntimeImages} {
		if err := os.MkdirAll(filepath.Join(dir, space), 0o700); err != nil {
			return nil, fmt.Errorf("runtime store: create %s: %w", space, err)
		}
	}
	return &RuntimeStore{dir: dir, opts: opts}, nil
}

// Dir is the metadata directory.
func (s *RuntimeStore) Dir() string { return s.dir }

// LocalRuntime is the built-in local runtime's configuration.
func LocalRuntime() RuntimeConfig {
	return RuntimeConfig{
		Name:        LocalRuntimeName,
		DisplayName: "Local (kfbridge)",
		SchemaName:  SchemaLocal,
		Metadata: RuntimeMetadata{
			RuntimeType: RuntimeTypeLocal,
			Description: "Runs steps as local processes beside kfbridge, with the local object store. Built in.",
		},
	}
}

// --- runtimes ---

// ListRuntimes returns the built-in local runtime followed by the stored runtimes sorted by
// name, with secrets redacted. Files that do not parse or validate are skipped (and reported in
// the returned error, joined, alongside the valid list) so one bad file never hides the others.
func (s *RuntimeStore) ListRuntimes() ([]RuntimeConfig, error) {
	out := []RuntimeConfig{LocalRuntime()}
	names, err := s.names(SchemaspaceRuntimes)
	if err != nil {
		return out, err
	}
	// A stored file named like the built-in runtime never shadows it.
	names = slices.DeleteFunc(names, func(n string) bool { return n == LocalRuntimeName })
	return loadAll(out, names, func(n string) (RuntimeConfig, error) {
		rc, err := s.loadRuntime(n)
		if err != nil {
			return RuntimeConfig{}, err
		}
		return rc.Redacted(), nil
	})
}

// GetRuntime returns one runtime with secrets redacted; the error wraps ErrNotFound if there is
// none by that name.
func (s *RuntimeStore) GetRuntime(name string) (RuntimeConfig, error) {
	if name == LocalRuntimeName {
		return LocalRuntime(), nil
	}
	if err := checkName(name); err != nil {
		return RuntimeConfig{}, fmt.Errorf("runtime %q: %w", name, ErrNotFound)
	}
	rc, err := s.loadRuntime(name)
	if err != nil {
		return RuntimeConfig{}, err
	}
	return rc.Redacted(), nil
}

// RuntimeWithSecrets returns a runtime's full configuration, secrets included, with defaults
// applied (runner_image from the store options). It is for building KFP and object-store clients
// inside the server; its result must never be written to a response or a log.
func (s *RuntimeStore) RuntimeWithSecrets(name string) (RuntimeConfig, error) {
	if name == LocalRuntimeName {
		return LocalRuntime(), nil
	}
	if err := checkName(name); err != nil {
		return RuntimeConfig{}, fmt.Errorf("runtime %q: %w", name, ErrNotFound)
	}
	rc, err := s.loadRuntime(name)
	if err != nil {
		return RuntimeConfig{}, err
	}
	// A file edited by hand or by another Elyra version may be invalid; say so before anyone
	// tries to connect with it.
	if err := rc.Validate(); err != nil {
		return RuntimeConfig{}, fmt.Errorf("runtime store: stored runtime: %w", err)
	}
	if rc.Metadata.RunnerImage == "" {
		rc.Metadata.RunnerImage = s.opts.DefaultRunnerImage
	}
	return rc, nil
}

// CreateRuntime validates and stores a new runtime and returns it redacted. An empty name is
// derived from display_name (as Elyra does); a name in use fails with ErrConflict. Secrets equal
// to SecretPlaceholder are treated as not set.
func (s *RuntimeStore) CreateRuntime(rc RuntimeConfig) (RuntimeConfig, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rc.Name == "" {
		rc.Name = s.freeName(SchemaspaceRuntimes, rc.DisplayName)
	}
	if rc.Name == LocalRuntimeName {
		return RuntimeConfig{}, fmt.Errorf("create runtime %q: %w: the local runtime is built in", rc.Name, ErrBuiltin)
	}
	if rc.Metadata.APIPassword == SecretPlaceholder {
		rc.Metadata.APIPassword = ""
	}
	if rc.Metadata.COSPassword == SecretPlaceholder {
		rc.Metadata.COSPassword = ""
	}
	rc.normalize()
	if err := rc.Validate(); err != nil {
		return RuntimeConfig{}, err
	}
	if err := s.write(SchemaspaceRuntimes, rc.Name, rc.fileForm(), true); err != nil {
		return RuntimeConfig{}, err
	}
	return rc.Redacted(), nil
}

// UpdateRuntime replaces the runtime name with rc and returns it redacted. A secret that is
// empty or equal to SecretPlaceholder keeps the stored value, unless the new auth type no longer
// uses it (then it is dropped). rc.Name may be empty; otherwise it must equal name (renames are
// not supported). The error wraps ErrNotFound if the runtime does not exist.
func (s *RuntimeStore) UpdateRuntime(name string, rc RuntimeConfig) (RuntimeConfig, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name == LocalRuntimeName {
		return RuntimeConfig{}, fmt.Errorf("update runtime %q: %w: the local runtime cannot be changed", name, ErrBuiltin)
	}
	if err := checkName(name); err != nil {
		return RuntimeConfig{}, fmt.Errorf("runtime %q: %w", name, ErrNotFound)
	}
	old, err := s.loadRuntime(name)
	if err != nil {
		return RuntimeConfig{}, err
	}
	if rc.Name != "" && rc.Name != name {
		return RuntimeConfig{}, &ValidationError{Name: name, Fields: []FieldError{{"name", fmt.Sprintf("%q does not match the runtime being updated; renaming is not supported", rc.Name)}}}
	}
	rc.Name = name
	rc.Metadata.APIPassword = keepSecret(rc.Metadata.APIPassword, old.Metadata.APIPassword)
	rc.Metadata.COSPassword = keepSecret(rc.Metadata.COSPassword, old.Metadata.COSPassword)
	rc.normalize()
	if !authUsesPassword(rc.Metadata.AuthType) {
		rc.Metadata.APIPassword = ""
	}
	if rc.Metadata.COSAuthType == COSAuthIRSA {
		rc.Metadata.COSPassword = ""
	}
	if err := rc.Validate(); err != nil {
		return RuntimeConfig{}, err
	}
	if err := s.write(SchemaspaceRuntimes, name, rc.fileForm(), false); err != nil {
		return RuntimeConfig{}, err
	}
	return rc.Redacted(), nil
}

// DeleteRuntime removes a stored runtime; the local runtime cannot be deleted (ErrBuiltin).
func (s *RuntimeStore) DeleteRuntime(name string) error {
	if name == LocalRuntimeName {
		return fmt.Errorf("delete runtime %q: %w: the local runtime cannot be deleted", name, ErrBuiltin)
	}
	return s.remove(SchemaspaceRuntimes, name)
}

// --- runtime images ---

// ListImages returns the stored runtime images sorted by name; unreadable files are reported in
// the (joined) error alongside the valid list.
func (s *RuntimeStore) ListImages() ([]RuntimeImage, error) {
	out := []RuntimeImage{}
	names, err := s.names(SchemaspaceRuntimeImages)
	if err != nil {
		return out, err
	}
	return loadAll(out, names, s.loadImage)
}

// loadAll appends the instances that load reads without error to out and joins the errors of the
// rest, so one bad file never hides the others.
func loadAll[T any](out []T, names []string, load func(name string) (T, error)) ([]T, error) {
	var errs []error
	for _, n := range names {
		v, err := load(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, v)
	}
	return out, errors.Join(errs...)
}

// GetImage returns one runtime image; the error wraps ErrNotFound if there is none.
func (s *RuntimeStore) GetImage(name string) (RuntimeImage, error) {
	if err := checkName(name); err != nil {
		return RuntimeImage{}, fmt.Errorf("runtime image %q: %w", name, ErrNotFound)
	}
	return s.loadImage(name)
}

// CreateImage validates and stores a new runtime image (name derived from display_name when
// empty); a name in use fails with ErrConflict.
func (s *RuntimeStore) CreateImage(im RuntimeImage) (RuntimeImage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if im.Name == "" {
		im.Name = s.freeName(SchemaspaceRuntimeImages, im.DisplayName)
	}
	im.normalize()
	if err := im.Validate(); err != nil {
		return RuntimeImage{}, err
	}
	if err := s.write(SchemaspaceRuntimeImages, im.Name, im.fileForm(), true); err != nil {
		return RuntimeImage{}, err
	}
	return im, nil
}

// UpdateImage replaces the runtime image name with im (im.Name empty or equal to name).
func (s *RuntimeStore) UpdateImage(name string, im RuntimeImage) (RuntimeImage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := checkName(name); err != nil {
		return RuntimeImage{}, fmt.Errorf("runtime image %q: %w", name, ErrNotFound)
	}
	if _, err := s.loadImage(name); err != nil {
		return RuntimeImage{}, err
	}
	if im.Name != "" && im.Name != name {
		return RuntimeImage{}, &ValidationError{Name: name, Fields: []FieldError{{"name", fmt.Sprintf("%q does not match the runtime image being updated; renaming is not supported", im.Name)}}}
	}
	im.Name = name
	im.normalize()
	if err := im.Validate(); err != nil {
		return RuntimeImage{}, err
	}
	if err := s.write(SchemaspaceRuntimeImages, name, im.fileForm(), false); err != nil {
		return RuntimeImage{}, err
	}
	return im, nil
}

// DeleteImage removes a runtime image.
func (s *RuntimeStore) DeleteImage(name string) error {
	return s.remove(SchemaspaceRuntimeImages, name)
}

// --- Elyra instances ---

// ElyraInstance is a parsed Elyra metadata file or API body: either a runtime or a runtime image.
type ElyraInstance struct {
	// Schemaspace is SchemaspaceRuntimes or SchemaspaceRuntimeImages.
	Schemaspace string
	Runtime     *RuntimeConfig
	Image       *RuntimeImage
	// Ignored lists metadata fields kfbridge does not know and dropped (e.g. from a newer Elyra).
	Ignored []string
}

// Name is the instance's name.
func (e *ElyraInstance) Name() string {
	if e.Runtime != nil {
		return e.Runtime.Name
	}
	return e.Image.Name
}

// ParseElyraInstance reads an Elyra metadata instance, as Elyra stores it in
// <jupyter data dir>/metadata/<schemaspace>/<name>.json or returns it from its API. The name is
// the instance's "name" or else filename's base name without .json. The schema (kfp or
// runtime-image) selects the kind; other schemas (airflow, catalogs, code snippets) are refused.
// Fields kfbridge does not know are dropped and listed in Ignored; the instance is not validated
// here (Create/Update do that).
func ParseElyraInstance(data []byte, filename string) (*ElyraInstance, error) {
	var raw struct {
		Name        string                     `json:"name"`
		DisplayName string                     `json:"display_name"`
		SchemaName  string                     `json:"schema_name"`
		Metadata    map[string]json.RawMessage `json:"metadata"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: %s: not an Elyra metadata instance: %v", ErrInvalid, filename, err)
	}
	if raw.Name == "" && filename != "" {
		raw.Name = strings.TrimSuffix(path.Base(filepath.ToSlash(filename)), ".json")
	}
	var known map[string]bool
	inst := &ElyraInstance{}
	switch raw.SchemaName {
	case SchemaKFP:
		inst.Schemaspace = SchemaspaceRuntimes
		known = jsonFields(RuntimeMetadata{})
	case SchemaRuntimeImage:
		inst.Schemaspace = SchemaspaceRuntimeImages
		known = jsonFields(ImageMetadata{})
	case "":
		return nil, &ValidationError{Name: raw.Name, Fields: []FieldError{{"schema_name", "missing; want kfp or runtime-image"}}}
	default:
		return nil, &ValidationError{Name: raw.Name, Fields: []FieldError{{"schema_name", fmt.Sprintf("%q is not supported; kfbridge imports kfp runtimes and runtime-image instances", raw.SchemaName)}}}
	}
	kept := map[string]json.RawMessage{}
	for k, v := range raw.Metadata {
		if known[k] {
			kept[k] = v
		} else {
			inst.Ignored = append(inst.Ignored, k)
		}
	}
	sort.Strings(inst.Ignored)
	md, _ := json.Marshal(kept)
	var err error
	if inst.Schemaspace == SchemaspaceRuntimes {
		rc := RuntimeConfig{Name: raw.Name, DisplayName: raw.DisplayName, SchemaName: raw.SchemaName}
		err = json.Unmarshal(md, &rc.Metadata)
		inst.Runtime = &rc
	} else {
		im := RuntimeImage{Name: raw.Name, DisplayName: raw.DisplayName, SchemaName: raw.SchemaName}
		err = json.Unmarshal(md, &im.Metadata)
		inst.Image = &im
	}
	if err != nil {
		// The decoder's message names the field and the expected type, never the value.
		return nil, fmt.Errorf("%w: %s: metadata: %v", ErrInvalid, filename, err)
	}
	return inst, nil
}

// ImportElyra parses an Elyra metadata instance (see ParseElyraInstance) and creates it, or
// replaces an existing instance of that name when overwrite is set.
func (s *RuntimeStore) ImportElyra(data []byte, filename string, overwrite bool) (*ElyraInstance, error) {
	inst, err := ParseElyraInstance(data, filename)
	if err != nil {
		return nil, err
	}
	if inst.Runtime != nil {
		rc, err := s.CreateRuntime(*inst.Runtime)
		if errors.Is(err, ErrConflict) && overwrite && !errors.Is(err, ErrBuiltin) {
			rc, err = s.UpdateRuntime(inst.Runtime.Name, *inst.Runtime)
		}
		if err != nil {
			return nil, err
		}
		inst.Runtime = &rc
		return inst, nil
	}
	im, err := s.CreateImage(*inst.Image)
	if errors.Is(err, ErrConflict) && overwrite {
		im, err = s.UpdateImage(inst.Image.Name, *inst.Image)
	}
	if err != nil {
		return nil, err
	}
	inst.Image = &im
	return inst, nil
}

// jsonFields lists the JSON names of a struct's fields.
func jsonFields(v any) map[string]bool {
	out := map[string]bool{}
	t := reflect.TypeOf(v)
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}

// --- validation and normalization ---

// Name rules: Elyra's instance-name pattern, bounded so names stay usable in file names and labels.
var (
	nameRE = regexp.MustCompile(`^[a-z]([a-z0-9_-]*[a-z0-9])?$`)
	// Kubernetes namespace (Elyra's user_namespace pattern, DNS-1123 label).
	namespaceRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// Elyra's cos_bucket pattern.
	bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`)
	// Kubernetes object names (DNS-1123 subdomain): Secrets.
	secretNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	// Elyra's tag pattern: no leading/trailing blanks.
	tagRE = regexp.MustCompile(`^[^ \t]+([ \t]+[^ \t]+)*$`)
	// An image reference: [registry[:port]/]path[:tag][@digest], lowercase path.
	imageRE = regexp.MustCompile(`^([a-zA-Z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[a-z0-9]+:[a-fA-F0-9]{32,})?$`)
)

var (
	blanksRE      = regexp.MustCompile(`\s+`)
	nameInvalidRE = regexp.MustCompile(`[^a-z0-9_-]+`)
)

const maxNameLen = 100

func checkName(name string) error {
	if name == "" {
		return errors.New("required")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("longer than %d characters", maxNameLen)
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%q must be lowercase alphanumeric, begin with a letter, and may contain embedded '-' and '_'", name)
	}
	return nil
}

// NormalizeName derives an instance name from a display name as Elyra does: lowercase, blanks
// to '_', other invalid characters dropped, "a_" prepended unless it starts with a letter, "_0"
// appended unless it ends with a letter or digit.
func NormalizeName(display string) string {
	s := strings.ToLower(strings.TrimSpace(display))
	s = blanksRE.ReplaceAllString(s, "_")
	s = nameInvalidRE.ReplaceAllString(s, "")
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		s = "a_" + s
	}
	if c := s[len(s)-1]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
		s += "_0"
	}
	if len(s) > maxNameLen-4 {
		s = strings.TrimRight(s[:maxNameLen-4], "_-")
	}
	return s
}

// freeName derives a name from display that is not in use in space ("" if display is empty, so
// validation reports the missing name).
func (s *RuntimeStore) freeName(space, display string) string {
	if strings.TrimSpace(display) == "" {
		return ""
	}
	base := NormalizeName(display)
	name := base
	for i := 1; ; i++ {
		if _, err := os.Stat(s.file(space, name)); errors.Is(err, fs.ErrNotExist) && name != LocalRuntimeName {
			return name
		}
		name = fmt.Sprintf("%s_%d", base, i)
	}
}

// normalize fills defaults and canonical spellings, so stored files are uniform.
func (rc *RuntimeConfig) normalize() {
	if rc.SchemaName == "" {
		rc.SchemaName = SchemaKFP
	}
	if rc.DisplayName == "" {
		rc.DisplayName = rc.Name
	}
	m := &rc.Metadata
	if m.RuntimeType == "" {
		m.RuntimeType = RuntimeTypeKFP
	}
	for _, p := range []*string{&m.APIEndpoint, &m.PublicAPIEndpoint, &m.COSEndpoint, &m.PublicCOSEndpoint,
		&m.UserNamespace, &m.COSBucket, &m.COSSecret, &m.RunnerImage, &m.CABundlePath, &m.APIUsername, &m.COSUsername} {
		*p = strings.TrimSpace(*p)
	}
	if m.APIVersion == "" {
		m.APIVersion = kfp.Auto
	}
	m.APIVersion = strings.ToLower(m.APIVersion)
	if m.Engine == "" || strings.EqualFold(m.Engine, EngineArgo) {
		m.Engine = EngineArgo
	}
	if t, err := kfp.ParseAuthType(m.AuthType); err == nil {
		m.AuthType = string(t)
	}
	if m.COSAuthType == "" {
		m.COSAuthType = COSAuthUserCredentials
	}
	m.COSAuthType = strings.ToUpper(strings.TrimSpace(m.COSAuthType))
	m.COSObjectPrefix = strings.Trim(strings.TrimSpace(m.COSObjectPrefix), "/")
	if m.Tags == nil {
		m.Tags = []string{}
	}
}

func (im *RuntimeImage) normalize() {
	if im.SchemaName == "" {
		im.SchemaName = SchemaRuntimeImage
	}
	if im.DisplayName == "" {
		im.DisplayName = im.Name
	}
	im.Metadata.ImageName = strings.TrimSpace(im.Metadata.ImageName)
	im.Metadata.PullSecret = strings.TrimSpace(im.Metadata.PullSecret)
	if im.Metadata.Tags == nil {
		im.Metadata.Tags = []string{}
	}
}

// Validate checks a runtime configuration against Elyra's kfp schema and kfbridge's rules and
// lists every problem with its field.
func (rc RuntimeConfig) Validate() error {
	var fe []FieldError
	add := func(field, format string, a ...any) {
		fe = append(fe, FieldError{Field: field, Message: fmt.Sprintf(format, a...)})
	}
	if err := checkName(rc.Name); err != nil {
		add("name", "%v", err)
	}
	if strings.TrimSpace(rc.DisplayName) == "" {
		add("display_name", "required")
	}
	switch rc.SchemaName {
	case SchemaKFP:
	case SchemaLocal:
		add("schema_name", "local is the built-in runtime; stored runtimes use schema kfp")
	default:
		add("schema_name", "%q is not supported; want kfp", rc.SchemaName)
	}
	m := rc.Metadata
	if m.RuntimeType != "" && m.RuntimeType != RuntimeTypeKFP {
		add("metadata.runtime_type", "%q: want %s", m.RuntimeType, RuntimeTypeKFP)
	}
	if m.APIEndpoint == "" {
		add("metadata.api_endpoint", "required (the KFP API URL, e.g. https://kubeflow.example.com/pipeline)")
	} else if msg := checkURL(m.APIEndpoint, true); msg != "" {
		add("metadata.api_endpoint", "%s", msg)
	}
	if m.PublicAPIEndpoint != "" {
		if msg := checkURL(m.PublicAPIEndpoint, true); msg != "" {
			add("metadata.public_api_endpoint", "%s", msg)
		}
	}
	if m.UserNamespace != "" && (len(m.UserNamespace) > 63 || !namespaceRE.MatchString(m.UserNamespace)) {
		add("metadata.user_namespace", "%q is not a Kubernetes namespace name (lowercase letters, digits and '-', at most 63)", m.UserNamespace)
	}
	switch m.APIVersion {
	case kfp.V1Beta1, kfp.V2Beta1, kfp.Auto:
	default:
		add("metadata.api_version", "%q: want %s, %s or %s", m.APIVersion, kfp.V1Beta1, kfp.V2Beta1, kfp.Auto)
	}
	if m.Engine != EngineArgo {
		add("metadata.engine", "%q is not supported; want %s", m.Engine, EngineArgo)
	}
	at, err := kfp.ParseAuthType(m.AuthType)
	if err != nil {
		add("metadata.auth_type", "%q: want one of %s", m.AuthType, strings.Join(authTypeNames(), ", "))
	} else {
		switch at {
		case kfp.AuthDexStaticPasswords, kfp.AuthDexLDAP:
			if m.APIUsername == "" {
				add("metadata.api_username", "required for auth_type %s", at)
			}
			if m.APIPassword == "" {
				add("metadata.api_password", "required for auth_type %s", at)
			}
		case kfp.AuthBearerToken:
			if m.APIPassword == "" {
				add("metadata.api_password", "required for auth_type %s (the bearer token)", at)
			}
		case kfp.AuthSessionCookie:
			if m.APIPassword == "" {
				add("metadata.api_password", "required for auth_type %s (the session cookie value)", at)
			}
		}
	}
	if m.CABundlePath != "" && !filepath.IsAbs(m.CABundlePath) {
		add("metadata.ca_bundle_path", "%q must be an absolute path", m.CABundlePath)
	}
	if m.COSEndpoint == "" {
		add("metadata.cos_endpoint", "required (the S3/MinIO endpoint, e.g. http://minio-service.kubeflow:9000)")
	} else if msg := checkURL(m.COSEndpoint, false); msg != "" {
		add("metadata.cos_endpoint", "%s", msg)
	}
	if m.PublicCOSEndpoint != "" {
		if msg := checkURL(m.PublicCOSEndpoint, true); msg != "" {
			add("metadata.public_cos_endpoint", "%s", msg)
		}
	}
	switch {
	case m.COSBucket == "":
		add("metadata.cos_bucket", "required")
	case len(m.COSBucket) < 3 || len(m.COSBucket) > 222 || !bucketRE.MatchString(m.COSBucket):
		add("metadata.cos_bucket", "%q is not a bucket name (3-222 lowercase letters, digits, '.' and '-')", m.COSBucket)
	}
	switch m.COSAuthType {
	case COSAuthUserCredentials:
		if m.COSUsername == "" {
			add("metadata.cos_username", "required for cos_auth_type %s", m.COSAuthType)
		}
		if m.COSPassword == "" {
			add("metadata.cos_password", "required for cos_auth_type %s", m.COSAuthType)
		}
	case COSAuthKubernetesSecret:
		if m.COSSecret == "" {
			add("metadata.cos_secret", "required for cos_auth_type %s (the name of a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", m.COSAuthType)
		}
	case COSAuthIRSA:
	default:
		add("metadata.cos_auth_type", "%q: want %s, %s or %s", m.COSAuthType, COSAuthUserCredentials, COSAuthKubernetesSecret, COSAuthIRSA)
	}
	if m.COSPassword != "" && len(m.COSPassword) < 8 {
		add("metadata.cos_password", "must be at least 8 characters")
	}
	if (m.COSUsername == "") != (m.COSPassword == "") && m.COSAuthType == COSAuthKubernetesSecret {
		add("metadata.cos_username", "cos_username and cos_password go together")
	}
	if m.COSSecret != "" && (len(m.COSSecret) > 253 || !secretNameRE.MatchString(m.COSSecret)) {
		add("metadata.cos_secret", "%q is not a Kubernetes Secret name", m.COSSecret)
	}
	if p := m.COSObjectPrefix; p != "" {
		for _, seg := range strings.Split(p, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00") {
				add("metadata.cos_object_prefix", "%q must be a relative key prefix without empty, '.' or '..' segments", p)
				break
			}
		}
	}
	if m.RunnerImage != "" && !imageRE.MatchString(m.RunnerImage) {
		add("metadata.runner_image", "%q is not an image reference", m.RunnerImage)
	}
	fe = append(fe, checkTags(m.Tags)...)
	if len(fe) > 0 {
		return &ValidationError{Name: rc.Name, Fields: fe}
	}
	return nil
}

// Validate checks a runtime image against Elyra's runtime-image schema.
func (im RuntimeImage) Validate() error {
	var fe []FieldError
	add := func(field, format string, a ...any) {
		fe = append(fe, FieldError{Field: field, Message: fmt.Sprintf(format, a...)})
	}
	if err := checkName(im.Name); err != nil {
		add("name", "%v", err)
	}
	if strings.TrimSpace(im.DisplayName) == "" {
		add("display_name", "required")
	}
	if im.SchemaName != SchemaRuntimeImage {
		add("schema_name", "%q is not supported; want %s", im.SchemaName, SchemaRuntimeImage)
	}
	m := im.Metadata
	if m.ImageName == "" {
		add("metadata.image_name", "required (e.g. registry/owner/image:tag)")
	} else if !imageRE.MatchString(m.ImageName) {
		add("metadata.image_name", "%q is not an image reference", m.ImageName)
	}
	switch m.PullPolicy {
	case "", "Always", "IfNotPresent", "Never":
	default:
		add("metadata.pull_policy", "%q: want Always, IfNotPresent or Never", m.PullPolicy)
	}
	if m.PullSecret != "" && (len(m.PullSecret) > 253 || !bucketRE.MatchString(m.PullSecret)) {
		add("metadata.pull_secret", "%q is not a Kubernetes Secret name", m.PullSecret)
	}
	fe = append(fe, checkTags(m.Tags)...)
	if len(fe) > 0 {
		return &ValidationError{Name: im.Name, Fields: fe}
	}
	return nil
}

func checkTags(tags []string) []FieldError {
	var fe []FieldError
	seen := map[string]bool{}
	for i, t := range tags {
		f := fmt.Sprintf("metadata.tags[%d]", i)
		switch {
		case !tagRE.MatchString(t):
			fe = append(fe, FieldError{f, fmt.Sprintf("%q: a tag is non-empty without leading or trailing blanks", t)})
		case seen[t]:
			fe = append(fe, FieldError{f, fmt.Sprintf("%q is listed twice", t)})
		}
		seen[t] = true
	}
	return fe
}

// checkURL returns "" if u is an http(s) URL with a host and no credentials; withPath allows a
// path (API endpoints are mounted under /pipeline; object-store endpoints have none).
func checkURL(u string, withPath bool) string {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return fmt.Sprintf("%q is not an http(s) URL with a host", u)
	}
	if p.User != nil {
		// Credentials in a URL would be returned by every read; they belong in the secret fields.
		return "must not contain credentials (user:password@); use the username/password fields"
	}
	if p.RawQuery != "" || p.Fragment != "" {
		return fmt.Sprintf("%q must not have a query or fragment", u)
	}
	if !withPath && p.Path != "" && p.Path != "/" {
		return fmt.Sprintf("%q must be scheme://host[:port] without a path", u)
	}
	return ""
}

func authTypeNames() []string {
	return []string{string(kfp.AuthNone), string(kfp.AuthServiceAccountToken), string(kfp.AuthBearerToken),
		string(kfp.AuthDexStaticPasswords), string(kfp.AuthDexLDAP), string(kfp.AuthSessionCookie)}
}

// authUsesPassword reports whether an auth type reads api_password.
func authUsesPassword(t string) bool {
	switch kfp.AuthType(t) {
	case kfp.AuthBearerToken, kfp.AuthSessionCookie, kfp.AuthDexStaticPasswords, kfp.AuthDexLDAP:
		return true
	}
	return false
}

// keepSecret is the update rule for a secret field: empty or the placeholder keeps the stored value.
func keepSecret(sent, stored string) string {
	if sent == "" || sent == SecretPlaceholder {
		return stored
	}
	return sent
}

// Redacted returns a copy with every set secret replaced by SecretPlaceholder.
func (rc RuntimeConfig) Redacted() RuntimeConfig {
	if rc.Metadata.APIPassword != "" {
		rc.Metadata.APIPassword = SecretPlaceholder
	}
	if rc.Metadata.COSPassword != "" {
		rc.Metadata.COSPassword = SecretPlaceholder
	}
	rc.Metadata.Tags = append([]string{}, rc.Metadata.Tags...)
	return rc
}

// KFPOptions maps the runtime's KFP settings onto kfp.Options (API version, namespace, auth, CA
// bundle). Call it on RuntimeWithSecrets' result: a redacted config has no credentials.
func (m RuntimeMetadata) KFPOptions() (kfp.Options, error) {
	at, err := kfp.ParseAuthType(m.AuthType)
	if err != nil {
		return kfp.Options{}, fmt.Errorf("%w: metadata.auth_type: %v", ErrInvalid, err)
	}
	o := kfp.Options{APIVersion: m.APIVersion, Namespace: m.UserNamespace, CABundle: m.CABundlePath, Auth: kfp.Auth{Type: at}}
	switch at {
	case kfp.AuthBearerToken:
		o.Auth.Token = m.APIPassword
	case kfp.AuthSessionCookie:
		o.Auth.Token, o.Auth.CookieName = m.APIPassword, m.APIUsername
	case kfp.AuthDexStaticPasswords, kfp.AuthDexLDAP:
		o.Auth.Username, o.Auth.Password = m.APIUsername, m.APIPassword
	}
	return o, nil
}

// --- files ---

// fileInstance is the on-disk form: Elyra writes the instance without its name (the file name
// is the name).
type fileInstance[M any] struct {
	DisplayName string `json:"display_name"`
	SchemaName  string `json:"schema_name"`
	Metadata    M      `json:"metadata"`
}

func (rc RuntimeConfig) fileForm() any {
	return fileInstance[RuntimeMetadata]{rc.DisplayName, rc.SchemaName, rc.Metadata}
}

func (im RuntimeImage) fileForm() any {
	return fileInstance[ImageMetadata]{im.DisplayName, im.SchemaName, im.Metadata}
}

func (s *RuntimeStore) file(space, name string) string {
	return filepath.Join(s.dir, space, name+".json")
}

// names lists the instance names in a schemaspace directory (valid names only; other files,
// such as editor backups, are not instances).
func (s *RuntimeStore) names(space string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.dir, space))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("runtime store: list %s: %w", space, err)
	}
	var out []string
	for _, e := range entries {
		n, ok := strings.CutSuffix(e.Name(), ".json")
		if ok && e.Type().IsRegular() && checkName(n) == nil {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (s *RuntimeStore) read(space, kind, name string) ([]byte, error) {
	b, err := os.ReadFile(s.file(space, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("runtime store: read %s %q: %w", kind, name, err)
	}
	return b, nil
}

// loadInstance reads and parses the stored instance name of space. A file whose schema belongs to
// the other schemaspace (a runtime-image in the runtimes directory, or the reverse) is invalid.
func (s *RuntimeStore) loadInstance(space, name string) (*ElyraInstance, error) {
	kind := kindOf(space)
	b, err := s.read(space, kind, name)
	if err != nil {
		return nil, err
	}
	inst, err := ParseElyraInstance(b, name+".json")
	if err == nil && inst.Schemaspace != space {
		wrong := SchemaRuntimeImage
		if space == SchemaspaceRuntimeImages {
			wrong = SchemaKFP
		}
		err = fmt.Errorf("%w: schema_name %q in the %s directory", ErrInvalid, wrong, space)
	}
	if err != nil {
		return nil, fmt.Errorf("runtime store: %s %q (%s): %w", kind, name, s.file(space, name), err)
	}
	return inst, nil
}

func (s *RuntimeStore) loadRuntime(name string) (RuntimeConfig, error) {
	inst, err := s.loadInstance(SchemaspaceRuntimes, name)
	if err != nil {
		return RuntimeConfig{}, err
	}
	rc := *inst.Runtime
	rc.Name = name
	rc.normalize()
	return rc, nil
}

func (s *RuntimeStore) loadImage(name string) (RuntimeImage, error) {
	inst, err := s.loadInstance(SchemaspaceRuntimeImages, name)
	if err != nil {
		return RuntimeImage{}, err
	}
	im := *inst.Image
	im.Name = name
	im.normalize()
	return im, nil
}

// write stores v atomically with mode 0600. With exclusive, an existing instance fails with
// ErrConflict: the finished temporary file is hard-linked to the final name, which fails if it
// exists, so not even a writer in another process is overwritten. Otherwise the file is replaced
// by rename.
func (s *RuntimeStore) write(space, name string, v any, exclusive bool) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("runtime store: encode %q: %w", name, err)
	}
	b = append(b, '\n')
	dir := filepath.Join(s.dir, space)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("runtime store: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return fmt.Errorf("runtime store: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600, so a secret is never readable by others, not even briefly.
	if _, err = tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("runtime store: write %q: %w", name, err)
	}
	final := s.file(space, name)
	if exclusive {
		err := linkFile(tmp.Name(), final)
		if err != nil && !errors.Is(err, fs.ErrExist) {
			// Some volume types (SMB/Azure Files, a few FUSE filesystems) have no hard links:
			// create the final file exclusively instead; only its content is then not atomic.
			err = writeExclusive(final, b)
		}
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s %q already exists: %w", kindOf(space), name, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("runtime store: create %q: %w", name, err)
		}
	} else if err := os.Rename(tmp.Name(), final); err != nil {
		return fmt.Errorf("runtime store: replace %q: %w", name, err)
	}
	syncDir(dir)
	return nil
}

// linkFile is os.Link; tests replace it to emulate volumes without hard links.
var linkFile = os.Link

// writeExclusive creates path (failing with fs.ErrExist if it exists) with content b, mode 0600.
func writeExclusive(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

func (s *RuntimeStore) remove(space, name string) error {
	if checkName(name) != nil {
		return fmt.Errorf("%s %q: %w", kindOf(space), name, ErrNotFound)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.Remove(s.file(space, name)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s %q: %w", kindOf(space), name, ErrNotFound)
		}
		return fmt.Errorf("runtime store: delete %q: %w", name, err)
	}
	syncDir(filepath.Join(s.dir, space))
	return nil
}

func kindOf(space string) string {
	if space == SchemaspaceRuntimeImages {
		return "runtime image"
	}
	return "runtime"
}

// syncDir makes a rename or unlink durable; failure only weakens durability, so it is ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
