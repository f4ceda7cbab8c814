package runs_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/kfbridge/kfbridge/kfp"
	"github.com/kfbridge/kfbridge/runs"
)

// Secret values used across these tests; no read path may ever return one of them.
const (
	testAPIPassword = "dex-Pa55word-api"
	testCOSPassword = "minio-S3cret-cos"
)

func newStore(t *testing.T) (*runs.RuntimeStore, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "metadata")
	s, err := runs.NewRuntimeStore(dir, runs.RuntimeStoreOptions{DefaultRunnerImage: "ghcr.io/kfbridge/kfbridge:9.9.9"})
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// dexRuntime is a complete KFP runtime with both secrets set.
func dexRuntime(name string) runs.RuntimeConfig {
	return runs.RuntimeConfig{
		Name:        name,
		DisplayName: "Kubeflow (" + name + ")",
		Metadata: runs.RuntimeMetadata{
			APIEndpoint:   "https://kubeflow.example.com/pipeline",
			UserNamespace: "alice",
			APIVersion:    "v2beta1",
			AuthType:      "DEX_STATIC_PASSWORDS",
			APIUsername:   "alice@example.com",
			APIPassword:   testAPIPassword,
			COSEndpoint:   "http://minio-service.kubeflow:9000",
			COSBucket:     "pipelines",
			COSAuthType:   "USER_CREDENTIALS",
			COSUsername:   "minio",
			COSPassword:   testCOSPassword,
			Tags:          []string{"dev"},
		},
	}
}

func assertNoSecret(t *testing.T, what string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{testAPIPassword, testCOSPassword} {
		if bytes.Contains(b, []byte(s)) {
			t.Fatalf("%s reveals a secret: %s", what, b)
		}
	}
}

func TestRuntimeStoreCRUD(t *testing.T) {
	s, dir := newStore(t)

	list, err := s.ListRuntimes()
	if err != nil || len(list) != 1 || list[0].Name != runs.LocalRuntimeName || list[0].SchemaName != runs.SchemaLocal {
		t.Fatalf("fresh store lists %+v, %v; want only the built-in local runtime", list, err)
	}

	created, err := s.CreateRuntime(dexRuntime("kf-dev"))
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "create result", created)
	if created.Metadata.APIPassword != runs.SecretPlaceholder || created.Metadata.COSPassword != runs.SecretPlaceholder {
		t.Errorf("create result secrets = %q/%q, want the placeholder", created.Metadata.APIPassword, created.Metadata.COSPassword)
	}
	if created.SchemaName != runs.SchemaKFP || created.Metadata.RuntimeType != runs.RuntimeTypeKFP || created.Metadata.Engine != "Argo" {
		t.Errorf("defaults not applied: %+v", created)
	}

	// The file: Elyra's layout and shape (no name inside), 0600, secrets at rest.
	path := filepath.Join(dir, "runtimes", "kf-dev.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("runtime file mode %v, want 0600", fi.Mode().Perm())
	}
	var onDisk map[string]any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &onDisk); err != nil {
		t.Fatal(err)
	}
	if _, ok := onDisk["name"]; ok || onDisk["schema_name"] != "kfp" || onDisk["display_name"] != "Kubeflow (kf-dev)" {
		t.Errorf("file is not Elyra-shaped: %s", b)
	}
	if md := onDisk["metadata"].(map[string]any); md["api_password"] != testAPIPassword || md["cos_password"] != testCOSPassword {
		t.Errorf("secrets not stored: %s", b)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "runtimes")); len(entries) != 1 {
		t.Errorf("runtimes dir holds %d entries, want 1 (no temporary files left)", len(entries))
	}

	got, err := s.GetRuntime("kf-dev")
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "get", got)
	if got.Metadata.APIEndpoint != "https://kubeflow.example.com/pipeline" || got.Metadata.UserNamespace != "alice" {
		t.Errorf("get = %+v", got)
	}
	if got.Metadata.RunnerImage != "" {
		t.Errorf("get fills runner_image %q; the default must stay implicit so a PUT-back does not pin it", got.Metadata.RunnerImage)
	}

	full, err := s.RuntimeWithSecrets("kf-dev")
	if err != nil {
		t.Fatal(err)
	}
	if full.Metadata.APIPassword != testAPIPassword || full.Metadata.COSPassword != testCOSPassword {
		t.Errorf("RuntimeWithSecrets lost secrets: %+v", full.Metadata)
	}
	if full.Metadata.RunnerImage != "ghcr.io/kfbridge/kfbridge:9.9.9" {
		t.Errorf("RuntimeWithSecrets runner image = %q, want the store default", full.Metadata.RunnerImage)
	}
	opts, err := full.Metadata.KFPOptions()
	if err != nil {
		t.Fatal(err)
	}
	if opts.Auth.Type != kfp.AuthDexStaticPasswords || opts.Auth.Username != "alice@example.com" || opts.Auth.Password != testAPIPassword ||
		opts.Namespace != "alice" || opts.APIVersion != kfp.V2Beta1 {
		t.Errorf("KFPOptions = %+v", opts)
	}
	if _, err := kfp.New(full.Metadata.APIEndpoint, opts); err != nil {
		t.Errorf("kfp.New rejects the options built from a valid runtime: %v", err)
	}

	if _, err := s.CreateRuntime(dexRuntime("kf-dev")); !errors.Is(err, runs.ErrConflict) {
		t.Errorf("second create: %v, want ErrConflict", err)
	}

	if _, err := s.CreateRuntime(dexRuntime("a-second")); err != nil {
		t.Fatal(err)
	}
	list, err = s.ListRuntimes()
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "list", list)
	var names []string
	for _, r := range list {
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "local,a-second,kf-dev" {
		t.Errorf("list order %v, want local first then by name", names)
	}

	upd := dexRuntime("kf-dev")
	upd.Metadata.UserNamespace = "bob"
	upd.Metadata.APIPassword, upd.Metadata.COSPassword = "", ""
	res, err := s.UpdateRuntime("kf-dev", upd)
	if err != nil {
		t.Fatal(err)
	}
	assertNoSecret(t, "update result", res)
	if res.Metadata.UserNamespace != "bob" {
		t.Errorf("update did not apply: %+v", res)
	}

	if err := s.DeleteRuntime("kf-dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRuntime("kf-dev"); !errors.Is(err, runs.ErrNotFound) {
		t.Errorf("get after delete: %v, want ErrNotFound", err)
	}
	if err := s.DeleteRuntime("kf-dev"); !errors.Is(err, runs.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateRuntime("kf-dev", upd); !errors.Is(err, runs.ErrNotFound) {
		t.Errorf("update of a missing runtime: %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"../etc/passwd", "Upper", ""} {
		if _, err := s.GetRuntime(bad); !errors.Is(err, runs.ErrNotFound) {
			t.Errorf("get %q: %v, want ErrNotFound", bad, err)
		}
	}
}

func TestLocalRuntimeIsBuiltIn(t *testing.T) {
	s, dir := newStore(t)
	if _, err := s.CreateRuntime(dexRuntime("local")); !errors.Is(err, runs.ErrBuiltin) || !errors.Is(err, runs.ErrConflict) {
		t.Errorf("create local: %v, want ErrBuiltin (a conflict)", err)
	}
	if _, err := s.UpdateRuntime("local", dexRuntime("local")); !errors.Is(err, runs.ErrBuiltin) {
		t.Errorf("update local: %v, want ErrBuiltin", err)
	}
	if err := s.DeleteRuntime("local"); !errors.Is(err, runs.ErrBuiltin) {
		t.Errorf("delete local: %v, want ErrBuiltin", err)
	}
	got, err := s.GetRuntime("local")
	if err != nil || got.Metadata.RuntimeType != runs.RuntimeTypeLocal {
		t.Errorf("get local = %+v, %v", got, err)
	}
	// A display name that normalizes to "local" gets another name rather than shadowing it.
	rc := dexRuntime("")
	rc.DisplayName = "Local"
	made, err := s.CreateRuntime(rc)
	if err != nil || made.Name == "local" {
		t.Fatalf("create from display name Local = %q, %v", made.Name, err)
	}
	// A stray local.json (e.g. written by hand) never replaces the built-in one.
	os.WriteFile(filepath.Join(dir, "runtimes", "local.json"), []byte(`{"schema_name":"kfp","display_name":"x","metadata":{}}`), 0o600)
	list, _ := s.ListRuntimes()
	if len(list) != 2 || list[0].SchemaName != runs.SchemaLocal {
		t.Errorf("list with a stray local.json = %+v", list)
	}
}

func TestRuntimeValidation(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*runs.RuntimeConfig)
		field string
	}{
		{"name pattern", func(r *runs.RuntimeConfig) { r.Name = "My Runtime" }, "name"},
		{"name leading digit", func(r *runs.RuntimeConfig) { r.Name = "1kf" }, "name"},
		{"name trailing dash", func(r *runs.RuntimeConfig) { r.Name = "kf-" }, "name"},
		{"schema", func(r *runs.RuntimeConfig) { r.SchemaName = "airflow" }, "schema_name"},
		{"schema local", func(r *runs.RuntimeConfig) { r.SchemaName = "local" }, "schema_name"},
		{"runtime type", func(r *runs.RuntimeConfig) { r.Metadata.RuntimeType = "APACHE_AIRFLOW" }, "metadata.runtime_type"},
		{"api endpoint missing", func(r *runs.RuntimeConfig) { r.Metadata.APIEndpoint = "" }, "metadata.api_endpoint"},
		{"api endpoint scheme", func(r *runs.RuntimeConfig) { r.Metadata.APIEndpoint = "ftp://kf/pipeline" }, "metadata.api_endpoint"},
		{"api endpoint no host", func(r *runs.RuntimeConfig) { r.Metadata.APIEndpoint = "https:///pipeline" }, "metadata.api_endpoint"},
		{"api endpoint credentials", func(r *runs.RuntimeConfig) { r.Metadata.APIEndpoint = "https://u:p@kf/pipeline" }, "metadata.api_endpoint"},
		{"public api endpoint", func(r *runs.RuntimeConfig) { r.Metadata.PublicAPIEndpoint = "kubeflow.example.com" }, "metadata.public_api_endpoint"},
		{"namespace", func(r *runs.RuntimeConfig) { r.Metadata.UserNamespace = "Alice_NS" }, "metadata.user_namespace"},
		{"namespace length", func(r *runs.RuntimeConfig) { r.Metadata.UserNamespace = strings.Repeat("a", 64) }, "metadata.user_namespace"},
		{"api version", func(r *runs.RuntimeConfig) { r.Metadata.APIVersion = "v3" }, "metadata.api_version"},
		{"engine", func(r *runs.RuntimeConfig) { r.Metadata.Engine = "Tekton" }, "metadata.engine"},
		{"auth type", func(r *runs.RuntimeConfig) { r.Metadata.AuthType = "OAUTH" }, "metadata.auth_type"},
		{"dex username", func(r *runs.RuntimeConfig) { r.Metadata.APIUsername = "" }, "metadata.api_username"},
		{"dex password", func(r *runs.RuntimeConfig) { r.Metadata.APIPassword = "" }, "metadata.api_password"},
		{"placeholder is not a password", func(r *runs.RuntimeConfig) { r.Metadata.APIPassword = runs.SecretPlaceholder }, "metadata.api_password"},
		{"bearer token", func(r *runs.RuntimeConfig) {
			r.Metadata.AuthType, r.Metadata.APIPassword = "EXISTING_BEARER_TOKEN", ""
		}, "metadata.api_password"},
		{"session cookie", func(r *runs.RuntimeConfig) {
			r.Metadata.AuthType, r.Metadata.APIPassword = "EXISTING_SESSION_COOKIE", ""
		}, "metadata.api_password"},
		{"ca bundle relative", func(r *runs.RuntimeConfig) { r.Metadata.CABundlePath = "certs/ca.pem" }, "metadata.ca_bundle_path"},
		{"cos endpoint missing", func(r *runs.RuntimeConfig) { r.Metadata.COSEndpoint = "" }, "metadata.cos_endpoint"},
		{"cos endpoint path", func(r *runs.RuntimeConfig) { r.Metadata.COSEndpoint = "http://minio:9000/bucket" }, "metadata.cos_endpoint"},
		{"public cos endpoint", func(r *runs.RuntimeConfig) { r.Metadata.PublicCOSEndpoint = "minio:9000" }, "metadata.public_cos_endpoint"},
		{"bucket missing", func(r *runs.RuntimeConfig) { r.Metadata.COSBucket = "" }, "metadata.cos_bucket"},
		{"bucket pattern", func(r *runs.RuntimeConfig) { r.Metadata.COSBucket = "My_Bucket" }, "metadata.cos_bucket"},
		{"bucket short", func(r *runs.RuntimeConfig) { r.Metadata.COSBucket = "ab" }, "metadata.cos_bucket"},
		{"cos auth type", func(r *runs.RuntimeConfig) { r.Metadata.COSAuthType = "ANONYMOUS" }, "metadata.cos_auth_type"},
		{"cos username", func(r *runs.RuntimeConfig) { r.Metadata.COSUsername = "" }, "metadata.cos_username"},
		{"cos password missing", func(r *runs.RuntimeConfig) { r.Metadata.COSPassword = "" }, "metadata.cos_password"},
		{"cos password short", func(r *runs.RuntimeConfig) { r.Metadata.COSPassword = "short7!" }, "metadata.cos_password"},
		{"cos secret missing", func(r *runs.RuntimeConfig) { r.Metadata.COSAuthType = "KUBERNETES_SECRET" }, "metadata.cos_secret"},
		{"cos secret name", func(r *runs.RuntimeConfig) {
			r.Metadata.COSAuthType, r.Metadata.COSSecret = "KUBERNETES_SECRET", "Not A Name"
		}, "metadata.cos_secret"},
		{"prefix dotdot", func(r *runs.RuntimeConfig) { r.Metadata.COSObjectPrefix = "team/../other" }, "metadata.cos_object_prefix"},
		{"runner image", func(r *runs.RuntimeConfig) { r.Metadata.RunnerImage = "Not An Image" }, "metadata.runner_image"},
		{"tags blank", func(r *runs.RuntimeConfig) { r.Metadata.Tags = []string{" dev"} }, "metadata.tags[0]"},
		{"tags duplicate", func(r *runs.RuntimeConfig) { r.Metadata.Tags = []string{"a", "a"} }, "metadata.tags[1]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newStore(t)
			rc := dexRuntime("kf")
			tc.edit(&rc)
			_, err := s.CreateRuntime(rc)
			var ve *runs.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, runs.ErrInvalid) {
				t.Fatalf("create: %v, want a ValidationError (ErrInvalid)", err)
			}
			found := false
			for _, f := range ve.Fields {
				found = found || f.Field == tc.field
			}
			if !found {
				t.Errorf("error %q does not name field %s", err, tc.field)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("message %q does not name field %s", err, tc.field)
			}
			for _, sec := range []string{testAPIPassword, testCOSPassword, "short7!"} {
				if strings.Contains(err.Error(), sec) {
					t.Errorf("message %q quotes a secret", err)
				}
			}
			if entries, _ := os.ReadDir(filepath.Join(dir, "runtimes")); len(entries) != 0 {
				t.Errorf("an invalid runtime left %d files", len(entries))
			}
		})
	}

	// Valid variants: every auth type with what it needs, every cos auth type, accepted spellings.
	ok := []func(*runs.RuntimeConfig){
		func(r *runs.RuntimeConfig) {
			r.Metadata.AuthType, r.Metadata.APIUsername, r.Metadata.APIPassword = "NO_AUTHENTICATION", "", ""
		},
		func(r *runs.RuntimeConfig) { r.Metadata.AuthType = "KUBERNETES_SERVICE_ACCOUNT_TOKEN" },
		func(r *runs.RuntimeConfig) { r.Metadata.AuthType = "DEX_LDAP" },
		func(r *runs.RuntimeConfig) { r.Metadata.AuthType = "DEX_LEGACY" },
		func(r *runs.RuntimeConfig) { r.Metadata.AuthType = "EXISTING_BEARER_TOKEN" },
		func(r *runs.RuntimeConfig) { r.Metadata.AuthType = "EXISTING_SESSION_COOKIE" },
		func(r *runs.RuntimeConfig) { r.Metadata.AuthType = "" },
		func(r *runs.RuntimeConfig) {
			r.Metadata.COSAuthType, r.Metadata.COSSecret = "KUBERNETES_SECRET", "mlpipeline-minio-artifact"
		},
		func(r *runs.RuntimeConfig) {
			r.Metadata.COSAuthType, r.Metadata.COSSecret, r.Metadata.COSUsername, r.Metadata.COSPassword = "KUBERNETES_SECRET", "s3-creds", "", ""
		},
		func(r *runs.RuntimeConfig) {
			r.Metadata.COSAuthType, r.Metadata.COSUsername, r.Metadata.COSPassword = "AWS_IAM_ROLES_FOR_SERVICE_ACCOUNTS", "", ""
		},
		func(r *runs.RuntimeConfig) { r.Metadata.APIVersion = "" },
		func(r *runs.RuntimeConfig) { r.Metadata.APIVersion = "V1BETA1" },
		func(r *runs.RuntimeConfig) { r.Metadata.Engine = "argo" },
		func(r *runs.RuntimeConfig) { r.Metadata.COSEndpoint = "https://s3.eu-west-1.amazonaws.com/" },
		func(r *runs.RuntimeConfig) { r.Metadata.COSObjectPrefix = "/team-a/elyra/" },
		func(r *runs.RuntimeConfig) { r.Metadata.RunnerImage = "registry.example.com:5000/ml/kfbridge:1.2.3" },
		func(r *runs.RuntimeConfig) { r.Metadata.CABundlePath = "/etc/ssl/kf-ca.pem" },
		func(r *runs.RuntimeConfig) { r.Name = "k" },
	}
	for i, edit := range ok {
		s, _ := newStore(t)
		rc := dexRuntime("kf")
		edit(&rc)
		if _, err := s.CreateRuntime(rc); err != nil {
			t.Errorf("valid variant %d rejected: %v", i, err)
		}
	}
}

func TestSecretPlaceholderMerge(t *testing.T) {
	s, _ := newStore(t)
	if _, err := s.CreateRuntime(dexRuntime("kf")); err != nil {
		t.Fatal(err)
	}
	secrets := func() (string, string) {
		t.Helper()
		full, err := s.RuntimeWithSecrets("kf")
		if err != nil {
			t.Fatal(err)
		}
		return full.Metadata.APIPassword, full.Metadata.COSPassword
	}

	// What a client got from GET, sent back unchanged (placeholders included), keeps both secrets.
	got, _ := s.GetRuntime("kf")
	got.DisplayName = "Renamed"
	if _, err := s.UpdateRuntime("kf", got); err != nil {
		t.Fatal(err)
	}
	if a, c := secrets(); a != testAPIPassword || c != testCOSPassword {
		t.Fatalf("placeholder update changed secrets to %q/%q", a, c)
	}
	if g, _ := s.GetRuntime("kf"); g.DisplayName != "Renamed" {
		t.Errorf("display name not updated: %q", g.DisplayName)
	}

	// Omitted secrets are kept too.
	got.Metadata.APIPassword, got.Metadata.COSPassword = "", ""
	if _, err := s.UpdateRuntime("kf", got); err != nil {
		t.Fatal(err)
	}
	if a, c := secrets(); a != testAPIPassword || c != testCOSPassword {
		t.Fatalf("update without secrets changed them to %q/%q", a, c)
	}

	// A new value replaces the stored one.
	got.Metadata.COSPassword = "a-new-cos-password"
	if _, err := s.UpdateRuntime("kf", got); err != nil {
		t.Fatal(err)
	}
	if a, c := secrets(); a != testAPIPassword || c != "a-new-cos-password" {
		t.Fatalf("update with a new cos password: %q/%q", a, c)
	}
	// A new value is validated like on create, even though the old one is kept on omission.
	got.Metadata.COSPassword = "short"
	if _, err := s.UpdateRuntime("kf", got); !errors.Is(err, runs.ErrInvalid) {
		t.Errorf("update with a 5-character cos password: %v, want ErrInvalid", err)
	}

	// Switching to auth types that do not use the secrets drops them rather than keeping a stale
	// credential around.
	got.Metadata.COSPassword = runs.SecretPlaceholder
	got.Metadata.AuthType, got.Metadata.APIUsername = "KUBERNETES_SERVICE_ACCOUNT_TOKEN", ""
	got.Metadata.COSAuthType, got.Metadata.COSUsername = "AWS_IAM_ROLES_FOR_SERVICE_ACCOUNTS", ""
	res, err := s.UpdateRuntime("kf", got)
	if err != nil {
		t.Fatal(err)
	}
	if a, c := secrets(); a != "" || c != "" {
		t.Errorf("secrets kept after switching to auth without them: %q/%q", a, c)
	}
	if res.Metadata.APIPassword != "" || res.Metadata.COSPassword != "" {
		t.Errorf("an unset secret reads as %q/%q, want empty", res.Metadata.APIPassword, res.Metadata.COSPassword)
	}

	// A rename through the body is refused, naming the field.
	got.Name = "other"
	if _, err := s.UpdateRuntime("kf", got); !errors.Is(err, runs.ErrInvalid) || !strings.Contains(err.Error(), "name") {
		t.Errorf("rename: %v", err)
	}
}

// elyraKFPInstance is shaped like a file Elyra 3.x wrote to
// ~/.local/share/jupyter/metadata/runtimes/kubeflow_dev.json (Elyra stores secrets in clear).
const elyraKFPInstance = `{
  "display_name": "Kubeflow Pipelines (dev)",
  "metadata": {
    "api_endpoint": "https://kubeflow.example.com/pipeline",
    "public_api_endpoint": "https://kubeflow.example.com/pipeline",
    "user_namespace": "alice",
    "engine": "Argo",
    "auth_type": "DEX_STATIC_PASSWORDS",
    "api_username": "alice@example.com",
    "api_password": "` + testAPIPassword + `",
    "cos_endpoint": "http://minio-service.kubeflow:9000",
    "public_cos_endpoint": "https://minio.example.com",
    "cos_bucket": "elyra-pipelines",
    "cos_auth_type": "KUBERNETES_SECRET",
    "cos_username": "minio",
    "cos_password": "` + testCOSPassword + `",
    "cos_secret": "mlpipeline-minio-artifact",
    "cos_object_prefix": "alice",
    "tags": ["dev", "team a"],
    "runtime_type": "KUBEFLOW_PIPELINES",
    "disable_ssl_verification": false
  },
  "schema_name": "kfp"
}`

const elyraImageInstance = `{
  "display_name": "Pandas 1.5",
  "metadata": {
    "description": "Pandas on Python 3.9",
    "image_name": "quay.io/elyra/elyra-example-anaconda-py3:2023.3.0",
    "pull_policy": "IfNotPresent",
    "tags": ["pandas"]
  },
  "schema_name": "runtime-image"
}`

func TestImportElyra(t *testing.T) {
	s, dir := newStore(t)
	inst, err := s.ImportElyra([]byte(elyraKFPInstance), "/home/jovyan/.local/share/jupyter/metadata/runtimes/kubeflow_dev.json", false)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Schemaspace != runs.SchemaspaceRuntimes || inst.Name() != "kubeflow_dev" {
		t.Errorf("import = %s %q", inst.Schemaspace, inst.Name())
	}
	if strings.Join(inst.Ignored, ",") != "disable_ssl_verification" {
		t.Errorf("ignored = %v", inst.Ignored)
	}
	assertNoSecret(t, "import result", inst.Runtime)
	full, err := s.RuntimeWithSecrets("kubeflow_dev")
	if err != nil {
		t.Fatal(err)
	}
	m := full.Metadata
	if m.APIPassword != testAPIPassword || m.COSPassword != testCOSPassword || m.COSSecret != "mlpipeline-minio-artifact" ||
		m.COSAuthType != runs.COSAuthKubernetesSecret || m.UserNamespace != "alice" || m.PublicCOSEndpoint != "https://minio.example.com" ||
		m.COSObjectPrefix != "alice" || len(m.Tags) != 2 || m.APIVersion != kfp.Auto || full.DisplayName != "Kubeflow Pipelines (dev)" {
		t.Errorf("imported runtime = %+v", full)
	}

	// Importing again conflicts, unless overwriting.
	if _, err := s.ImportElyra([]byte(elyraKFPInstance), "kubeflow_dev.json", false); !errors.Is(err, runs.ErrConflict) {
		t.Errorf("re-import: %v, want ErrConflict", err)
	}
	changed := strings.Replace(elyraKFPInstance, `"user_namespace": "alice"`, `"user_namespace": "bob"`, 1)
	if _, err := s.ImportElyra([]byte(changed), "kubeflow_dev.json", true); err != nil {
		t.Fatal(err)
	}
	if g, _ := s.GetRuntime("kubeflow_dev"); g.Metadata.UserNamespace != "bob" {
		t.Errorf("overwrite did not apply: %q", g.Metadata.UserNamespace)
	}

	im, err := s.ImportElyra([]byte(elyraImageInstance), "pandas.json", false)
	if err != nil {
		t.Fatal(err)
	}
	if im.Schemaspace != runs.SchemaspaceRuntimeImages || im.Image.Metadata.ImageName != "quay.io/elyra/elyra-example-anaconda-py3:2023.3.0" {
		t.Errorf("image import = %+v", im.Image)
	}
	if _, err := os.Stat(filepath.Join(dir, "runtime-images", "pandas.json")); err != nil {
		t.Error(err)
	}

	// Unsupported schemas and broken files are refused with a clear error.
	for _, bad := range []string{
		`{"display_name":"x","schema_name":"airflow","metadata":{}}`,
		`{"display_name":"x","metadata":{}}`,
		`{"display_name":"x","schema_name":"kfp","metadata":{"tags":"dev"}}`,
		`not json`,
	} {
		if _, err := s.ImportElyra([]byte(bad), "x.json", false); !errors.Is(err, runs.ErrInvalid) {
			t.Errorf("import %s: %v, want ErrInvalid", bad, err)
		}
	}
}

// An Elyra install pointed at the store's directory must load what the store writes: the files
// validate against Elyra's own schemas (kfp.json, runtime-image.json).
func TestStoredFilesValidateAgainstElyraSchemas(t *testing.T) {
	specs := findElyraSpecs(t)
	s, dir := newStore(t)
	if _, err := s.ImportElyra([]byte(elyraKFPInstance), "kubeflow_dev.json", false); err != nil {
		t.Fatal(err)
	}
	rc := dexRuntime("minimal")
	rc.Metadata = runs.RuntimeMetadata{APIEndpoint: "http://ml-pipeline.kubeflow:8888", COSEndpoint: "http://minio:9000",
		COSBucket: "b12", COSAuthType: "AWS_IAM_ROLES_FOR_SERVICE_ACCOUNTS"}
	if _, err := s.CreateRuntime(rc); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ImportElyra([]byte(elyraImageInstance), "pandas.json", false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateImage(runs.RuntimeImage{Name: "bare", Metadata: runs.ImageMetadata{ImageName: "python:3.12"}}); err != nil {
		t.Fatal(err)
	}
	check := func(schemaFile, space string) {
		sch := compileElyraSchema(t, filepath.Join(specs, schemaFile))
		files, _ := filepath.Glob(filepath.Join(dir, space, "*.json"))
		if len(files) != 2 {
			t.Fatalf("%s holds %d files, want 2", space, len(files))
		}
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := jsonschema.UnmarshalJSON(fh)
			fh.Close()
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(doc); err != nil {
				t.Errorf("%s does not validate against Elyra's %s: %v", f, schemaFile, err)
			}
		}
	}
	// The schemas do reject: a wrong enum value fails, so the passes above mean something.
	bad := map[string]any{"schema_name": "kfp", "display_name": "x", "metadata": map[string]any{
		"api_endpoint": "http://kf", "cos_endpoint": "http://minio:9000", "cos_bucket": "bkt", "cos_auth_type": "NONE"}}
	if err := compileElyraSchema(t, filepath.Join(specs, "kfp.json")).Validate(bad); err == nil {
		t.Fatal("Elyra's kfp schema accepted cos_auth_type NONE; the check is not working")
	}
	check("kfp.json", "runtimes")
	check("runtime-image.json", "runtime-images")
}

func findElyraSpecs(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		cand := filepath.Join(dir, "shared", "specs", "elyra")
		if _, err := os.Stat(filepath.Join(cand, "kfp.json")); err == nil {
			return cand
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			if os.Getenv("CI") == "true" {
				t.Fatal("shared/specs/elyra not found above the working directory")
			}
			t.Skip("shared/specs/elyra not found above the working directory")
		}
		dir = parent
	}
}

// compileElyraSchema loads an Elyra schema the way Elyra uses it: the auth_type enum
// placeholders are replaced by the provider names Elyra substitutes at load time, and the
// meta-schema reference is dropped (it describes schemas, not instances).
func compileElyraSchema(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "$schema")
	if md, ok := doc["properties"].(map[string]any)["metadata"].(map[string]any); ok {
		if at, ok := md["properties"].(map[string]any)["auth_type"].(map[string]any); ok {
			at["enum"] = []any{"NO_AUTHENTICATION", "KUBERNETES_SERVICE_ACCOUNT_TOKEN", "DEX_STATIC_PASSWORDS", "DEX_LDAP", "EXISTING_BEARER_TOKEN"}
			at["default"] = "NO_AUTHENTICATION"
		}
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft7)
	c.AssertFormat()
	url := "file://" + file
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func TestRuntimeImages(t *testing.T) {
	s, dir := newStore(t)
	if l, err := s.ListImages(); err != nil || len(l) != 0 {
		t.Fatalf("fresh image list = %v, %v", l, err)
	}
	im, err := s.CreateImage(runs.RuntimeImage{DisplayName: "My Pandas Image!", Metadata: runs.ImageMetadata{
		ImageName: "quay.io/org/pandas:1.0", PullPolicy: "Always", PullSecret: "regcred", Tags: []string{"py"}}})
	if err != nil {
		t.Fatal(err)
	}
	if im.Name != "my_pandas_image" || im.SchemaName != runs.SchemaRuntimeImage {
		t.Errorf("derived name %q schema %q", im.Name, im.SchemaName)
	}
	// Same display name again: a fresh name, not a conflict (as Elyra's POST without a name).
	im2, err := s.CreateImage(runs.RuntimeImage{DisplayName: "My Pandas Image!", Metadata: runs.ImageMetadata{ImageName: "quay.io/org/pandas:2.0"}})
	if err != nil || im2.Name == im.Name {
		t.Fatalf("second derived name %q, %v", im2.Name, err)
	}
	if _, err := s.CreateImage(runs.RuntimeImage{Name: im.Name, Metadata: runs.ImageMetadata{ImageName: "x:1"}}); !errors.Is(err, runs.ErrConflict) {
		t.Errorf("explicit duplicate name: %v, want ErrConflict", err)
	}
	im.Metadata.PullPolicy = "Sometimes"
	_, err = s.UpdateImage(im.Name, im)
	if !errors.Is(err, runs.ErrInvalid) || !strings.Contains(err.Error(), "metadata.pull_policy") {
		t.Errorf("bad pull policy: %v", err)
	}
	im.Metadata.PullPolicy = "Never"
	if _, err := s.UpdateImage(im.Name, im); err != nil {
		t.Fatal(err)
	}
	if g, err := s.GetImage(im.Name); err != nil || g.Metadata.PullPolicy != "Never" || g.Metadata.PullSecret != "regcred" {
		t.Errorf("get after update = %+v, %v", g, err)
	}
	for _, bad := range []runs.RuntimeImage{
		{Name: "a", Metadata: runs.ImageMetadata{}},
		{Name: "a", Metadata: runs.ImageMetadata{ImageName: "has space:1"}},
		{Name: "a", Metadata: runs.ImageMetadata{ImageName: "x:1", PullSecret: "Bad_Secret"}},
		{Name: "A", Metadata: runs.ImageMetadata{ImageName: "x:1"}},
		{Name: "a", SchemaName: "kfp", Metadata: runs.ImageMetadata{ImageName: "x:1"}},
	} {
		if _, err := s.CreateImage(bad); !errors.Is(err, runs.ErrInvalid) {
			t.Errorf("create %+v: %v, want ErrInvalid", bad, err)
		}
	}
	l, _ := s.ListImages()
	if len(l) != 2 {
		t.Errorf("list = %d images, want 2", len(l))
	}
	if err := s.DeleteImage(im.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetImage(im.Name); !errors.Is(err, runs.ErrNotFound) {
		t.Errorf("get deleted image: %v", err)
	}
	// A broken file is reported but does not hide the others.
	os.WriteFile(filepath.Join(dir, "runtime-images", "broken.json"), []byte("{"), 0o600)
	l, err = s.ListImages()
	if len(l) != 1 || err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("list with a broken file = %d images, %v", len(l), err)
	}
}

// Concurrent creates of one name: exactly one wins, the rest conflict, and the file is whole.
func TestConcurrentCreate(t *testing.T) {
	s, dir := newStore(t)
	// Two stores on one directory stand in for two processes (kfbridge and a second instance).
	s2, err := runs.NewRuntimeStore(dir, runs.RuntimeStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if i%2 == 1 {
				st = s2
			}
			_, err := st.CreateRuntime(dexRuntime("race"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, runs.ErrConflict):
				conflicts++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || conflicts != 15 {
		t.Errorf("wins=%d conflicts=%d, want 1 and 15", wins, conflicts)
	}
	if _, err := s.RuntimeWithSecrets("race"); err != nil {
		t.Error(err)
	}
}

func TestNormalizeName(t *testing.T) {
	for in, want := range map[string]string{
		"My KFP":            "my_kfp",
		"  Kubeflow  Dev ":  "kubeflow_dev",
		"2nd cluster":       "a_2nd_cluster",
		"prod-":             "prod-_0",
		"Zürich (EU) west!": "zrich_eu_west",
		"***":               "a__0",
	} {
		if got := runs.NormalizeName(in); got != want {
			t.Errorf("NormalizeName(%q) = %q, want %q", in, got, want)
		}
	}
}
