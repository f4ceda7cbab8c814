package deploy_test

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kfbridge/kfbridge/kfp"
)

// --- Dockerfile ---

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, …
	args string
	line int
}

// stage is one FROM … block.
type stage struct {
	base, name string
	ins        []instruction
}

func parseDockerfile(t *testing.T, path string) (global []instruction, stages []*stage) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var cur strings.Builder
	start, n := 0, 0
	flush := func() {
		s := strings.TrimSpace(cur.String())
		cur.Reset()
		if s == "" {
			return
		}
		cmd, args, _ := strings.Cut(s, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		if in.cmd == "FROM" {
			fields := strings.Fields(in.args)
			var rest []string
			for _, f := range fields {
				if !strings.HasPrefix(f, "--") {
					rest = append(rest, f)
				}
			}
			st := &stage{base: rest[0]}
			if len(rest) == 3 && strings.EqualFold(rest[1], "AS") {
				st.name = rest[2]
			}
			stages = append(stages, st)
			return
		}
		if len(stages) == 0 {
			global = append(global, in)
		} else {
			stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		}
	}
	for sc.Scan() {
		n++
		l := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if s, ok := strings.CutSuffix(strings.TrimRight(l, " \t"), "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(l)
		flush()
	}
	flush()
	return global, stages
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// goDirective is go.mod's "go" line.
func goDirective(t *testing.T, root string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// buildFlags extracts what the Dockerfile's go build runs with: -ldflags (with ${VERSION}
// substituted) and the packages.
func buildFlags(t *testing.T, run string, version string) (ldflags string, pkgs []string) {
	t.Helper()
	m := regexp.MustCompile(`-ldflags "([^"]*)"`).FindStringSubmatch(run)
	if m == nil {
		t.Fatalf("go build has no -ldflags: %s", run)
	}
	ldflags = strings.ReplaceAll(m[1], "${VERSION}", version)
	for _, f := range strings.Fields(run) {
		if strings.HasPrefix(f, "./cmd/") {
			pkgs = append(pkgs, f)
		}
	}
	return ldflags, pkgs
}

func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	global, stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a multi-stage build", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	// The builder's Go is go.mod's.
	wantGo := goDirective(t, root)
	foundGo := false
	for _, in := range global {
		if in.cmd == "ARG" && in.args == "GO_VERSION="+wantGo {
			foundGo = true
		}
	}
	if !foundGo || !strings.HasPrefix(build.base, "golang:${GO_VERSION}") {
		t.Errorf("build stage %q / ARG GO_VERSION does not pin go.mod's go %s", build.base, wantGo)
	}
	if strings.Contains(final.base, "golang") {
		t.Errorf("final stage is based on %s: the runtime image must not carry the toolchain", final.base)
	}

	// Static: CGO_ENABLED=0 for the build, and the build builds both commands.
	cgoOff, buildRun := false, ""
	for _, in := range build.ins {
		if (in.cmd == "ENV" || in.cmd == "RUN") && regexp.MustCompile(`\bCGO_ENABLED=0\b`).MatchString(in.args) {
			cgoOff = true
		}
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			buildRun = in.args
		}
	}
	if !cgoOff {
		t.Error("the build stage does not set CGO_ENABLED=0")
	}
	if buildRun == "" {
		t.Fatal("the build stage has no go build")
	}
	_, pkgs := buildFlags(t, buildRun, "x")
	if strings.Join(pkgs, " ") != "./cmd/kfbridge ./cmd/kfbridge-step" {
		t.Errorf("go build builds %v, want ./cmd/kfbridge ./cmd/kfbridge-step", pkgs)
	}

	// Final stage: both binaries in /usr/local/bin, a non-root user, kfbridge as entrypoint.
	copied := map[string]bool{}
	user, entry := "", ""
	for _, in := range final.ins {
		switch in.cmd {
		case "COPY":
			f := strings.Fields(in.args)
			if strings.Contains(in.args, "--from="+build.name) || strings.Contains(in.args, "--from=0") {
				copied[f[len(f)-1]] = true
			}
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entry = in.args
		case "ENV":
			for _, kv := range strings.Fields(in.args) {
				if k, _, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "KFBRIDGE_") {
					checkServeEnv(t, root, k)
				}
			}
		}
	}
	for _, bin := range []string{"/usr/local/bin/kfbridge", "/usr/local/bin/kfbridge-step"} {
		if !copied[bin] {
			t.Errorf("the final stage does not copy %s from the build stage", bin)
		}
	}
	u, _, _ := strings.Cut(user, ":")
	if u == "" || u == "0" || u == "root" {
		t.Errorf("final USER is %q, want a non-root user", user)
	}
	if !strings.Contains(entry, "/usr/local/bin/kfbridge\"") {
		t.Errorf("ENTRYPOINT %s, want /usr/local/bin/kfbridge", entry)
	}

	// Every -X target exists, or the version would silently stay "dev".
	ld, _ := buildFlags(t, buildRun, "1.2.3")
	for _, m := range regexp.MustCompile(`-X ([\w./-]+)\.(\w+)=`).FindAllStringSubmatch(ld, -1) {
		dir := filepath.Join(root, strings.TrimPrefix(m[1], "github.com/kfbridge/kfbridge/"))
		if !dirDeclares(t, dir, "var "+m[2]+" = ") {
			t.Errorf("-X %s.%s: no such variable", m[1], m[2])
		}
	}
}

// dirDeclares reports whether a non-test Go file in dir contains decl.
func dirDeclares(t *testing.T, dir, decl string) bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		if b, _ := os.ReadFile(f); bytes.Contains(b, []byte(decl)) {
			return true
		}
	}
	return false
}

// checkServeEnv fails unless `kfbridge serve` reads the environment variable name.
func checkServeEnv(t *testing.T, root, name string) {
	t.Helper()
	if !dirDeclares(t, filepath.Join(root, "server"), `"`+name+`"`) {
		t.Errorf("%s is set, but kfbridge serve does not read it", name)
	}
}

// dockerignore is the subset of .dockerignore syntax this repository uses: "name" and "dir/name"
// anchored at the root, "**/pattern" at any depth, "*.ext" at the root, and "!pattern" exceptions.
type dockerignore struct {
	rules []struct {
		neg bool
		pat string
	}
}

func loadDockerignore(t *testing.T, path string) *dockerignore {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerignore{}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		neg := strings.HasPrefix(l, "!")
		d.rules = append(d.rules, struct {
			neg bool
			pat string
		}{neg, strings.TrimPrefix(l, "!")})
	}
	return d
}

// excluded reports whether rel (slash-separated, relative to the context root) stays out of the
// build context: it, or a directory above it, matches the last rule that applies.
func (d *dockerignore) excluded(rel string) bool {
	parts := strings.Split(rel, "/")
	for i := 1; i <= len(parts); i++ {
		p := strings.Join(parts[:i], "/")
		out := false
		for _, r := range d.rules {
			if matchIgnore(r.pat, p) {
				out = !r.neg
			}
		}
		if out {
			return true
		}
	}
	return false
}

func matchIgnore(pat, rel string) bool {
	if p, ok := strings.CutPrefix(pat, "**/"); ok {
		parts := strings.Split(rel, "/")
		for i := range parts {
			if ok, _ := filepath.Match(p, strings.Join(parts[i:], "/")); ok {
				return true
			}
			if ok, _ := filepath.Match(p, parts[i]); ok {
				return true
			}
		}
		return false
	}
	ok, _ := filepath.Match(pat, rel)
	return ok
}

// copyContext copies the files of root that .dockerignore lets into the build context.
func copyContext(t *testing.T, root, dst string, ign *dockerignore) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if ign.excluded(rel) {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !e.Type().IsRegular() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		out, err := os.Create(filepath.Join(dst, rel))
		if err != nil {
			return err
		}
		_, err = io.Copy(out, src)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStaticBinaries builds both commands as the Dockerfile does — from a copy of the build
// context .dockerignore leaves, with CGO_ENABLED=0 and the Dockerfile's -ldflags — and proves
// they are static (no ELF interpreter, no shared-library dependency), carry the build settings,
// report the stamped version, and that the init container's `kfbridge-step cp` works.
func TestStaticBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries; skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the image is linux; ELF checks need a linux build")
	}
	root := repoRoot(t)
	ign := loadDockerignore(t, filepath.Join(root, ".dockerignore"))
	for _, must := range []string{"go.mod", "go.sum", "cmd/kfbridge/main.go", "cmd/kfbridge-step/main.go", "runner/driver.py", "web/static"} {
		if ign.excluded(must) {
			t.Errorf(".dockerignore excludes %s, which the build needs", must)
		}
	}
	for _, must := range []string{".git", "bin", "deploy/deploy_test.go", "runs/runtimes_test.go", "kfp/argo/testdata"} {
		if !ign.excluded(must) {
			t.Errorf(".dockerignore lets %s into the build context", must)
		}
	}

	_, stages := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	var buildRun string
	for _, in := range stages[0].ins {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			buildRun = in.args
		}
	}
	const version = "9.8.7-test"
	ldflags, pkgs := buildFlags(t, buildRun, version)

	ctxDir := filepath.Join(t.TempDir(), "src")
	copyContext(t, root, ctxDir, ign)
	out := t.TempDir()
	args := append([]string{"build", "-trimpath", "-ldflags", ldflags, "-o", out + "/"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = ctxDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s (in the build context): %v\n%s", strings.Join(args, " "), err, b)
	}

	for _, name := range []string{"kfbridge", "kfbridge-step"} {
		bin := filepath.Join(out, name)
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has an ELF interpreter: it is dynamically linked", name)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v", name, libs)
		}
		f.Close()

		info, err := exec.Command("go", "version", "-m", bin).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"build\tCGO_ENABLED=0", "build\t-trimpath=true"} {
			if !strings.Contains(string(info), want) {
				t.Errorf("go version -m %s lacks %q:\n%s", name, want, info)
			}
		}
		v, err := exec.Command(bin, "version").Output()
		if err != nil || !strings.Contains(string(v), version) {
			t.Errorf("%s version = %q, %v; want %s stamped by -ldflags", name, v, err, version)
		}
	}

	// The Argo init container's command.
	dst := filepath.Join(t.TempDir(), "kfbridge", "bin", "kfbridge-step")
	os.MkdirAll(filepath.Dir(dst), 0o755)
	if b, err := exec.Command(filepath.Join(out, "kfbridge-step"), "cp", filepath.Join(out, "kfbridge-step"), dst).CombinedOutput(); err != nil {
		t.Fatalf("kfbridge-step cp: %v\n%s", err, b)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("copied runner: %v, mode %v", err, fi.Mode())
	}
	if v, err := exec.Command(dst, "version").Output(); err != nil || !strings.Contains(string(v), version) {
		t.Errorf("copied runner does not run: %q %v", v, err)
	}
}

// --- Kubernetes manifests ---

type doc struct {
	file string
	obj  map[string]any // a Kubernetes object
	ops  []any          // or a JSON patch (a list)
}

func loadManifests(t *testing.T) []doc {
	t.Helper()
	files, _ := filepath.Glob("*.yaml")
	if len(files) == 0 {
		t.Fatal("no deploy/*.yaml")
	}
	var docs []doc
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, part := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			if strings.TrimSpace(stripComments(part)) == "" {
				continue
			}
			var v any
			if err := yaml.UnmarshalStrict([]byte(part), &v); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			switch v := v.(type) {
			case map[string]any:
				docs = append(docs, doc{file: f, obj: v})
			case []any:
				docs = append(docs, doc{file: f, ops: v})
			default:
				t.Fatalf("%s document %d is a %T", f, i+1, v)
			}
		}
	}
	return docs
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// get walks a path of map keys and list indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func str(v any, path ...any) string { s, _ := get(v, path...).(string); return s }
func list(v any, path ...any) []any { l, _ := get(v, path...).([]any); return l }

var apiVersions = map[string]string{
	"PodDefault":            "kubeflow.org/v1alpha1",
	"Notebook":              "kubeflow.org/v1",
	"Secret":                "v1",
	"Service":               "v1",
	"PersistentVolumeClaim": "v1",
	"Role":                  "rbac.authorization.k8s.io/v1",
	"RoleBinding":           "rbac.authorization.k8s.io/v1",
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func TestManifests(t *testing.T) {
	docs := loadManifests(t)
	byKind := map[string]map[string]map[string]any{}
	for _, d := range docs {
		if d.obj == nil {
			continue
		}
		kind, name := str(d.obj, "kind"), str(d.obj, "metadata", "name")
		want, known := apiVersions[kind]
		if !known {
			t.Errorf("%s: unexpected kind %q", d.file, kind)
			continue
		}
		if got := str(d.obj, "apiVersion"); got != want {
			t.Errorf("%s: %s %s apiVersion %q, want %q", d.file, kind, name, got, want)
		}
		if name == "" || len(name) > 63 || !dnsLabel.MatchString(name) {
			t.Errorf("%s: %s has metadata.name %q", d.file, kind, name)
		}
		if str(d.obj, "metadata", "namespace") == "" {
			t.Errorf("%s: %s %s has no namespace", d.file, kind, name)
		}
		if byKind[kind] == nil {
			byKind[kind] = map[string]map[string]any{}
		}
		if byKind[kind][name] != nil {
			t.Errorf("%s: %s %s defined twice", d.file, kind, name)
		}
		byKind[kind][name] = d.obj
	}

	// The PodDefault: the projected KFP token where the KFP clients (kfp.DefaultTokenPath) look.
	pd := byKind["PodDefault"]["access-ml-pipeline"]
	if pd == nil {
		t.Fatal("no PodDefault access-ml-pipeline")
	}
	if str(pd, "spec", "selector", "matchLabels", "access-ml-pipeline") != "true" || str(pd, "spec", "desc") == "" {
		t.Errorf("PodDefault selector/desc: %v", get(pd, "spec"))
	}
	var tokenVol, tokenFile, mountPath string
	for _, v := range list(pd, "spec", "volumes") {
		for _, src := range list(v, "projected", "sources") {
			if sat := get(src, "serviceAccountToken"); sat != nil {
				tokenVol = str(v, "name")
				tokenFile = str(sat, "path")
				if str(sat, "audience") != "pipelines.kubeflow.org" {
					t.Errorf("token audience %q, want pipelines.kubeflow.org", str(sat, "audience"))
				}
				if exp, _ := get(sat, "expirationSeconds").(float64); exp < 600 {
					t.Errorf("expirationSeconds %v: Kubernetes requires at least 600", exp)
				}
			}
		}
	}
	for _, m := range list(pd, "spec", "volumeMounts") {
		if str(m, "name") == tokenVol {
			mountPath = str(m, "mountPath")
		}
	}
	if tokenVol == "" || mountPath+"/"+tokenFile != kfp.DefaultTokenPath {
		t.Errorf("token mounted at %s/%s, want %s", mountPath, tokenFile, kfp.DefaultTokenPath)
	}
	envOK := false
	for _, e := range list(pd, "spec", "env") {
		if str(e, "name") == kfp.TokenPathEnv && str(e, "value") == kfp.DefaultTokenPath {
			envOK = true
		}
	}
	if !envOK {
		t.Errorf("PodDefault does not set %s=%s", kfp.TokenPathEnv, kfp.DefaultTokenPath)
	}

	// The Notebook: selected by the PodDefault; a kfbridge sidecar sharing the workspace.
	nb := byKind["Notebook"]["alice-nb"]
	if nb == nil {
		t.Fatal("no Notebook example")
	}
	if str(nb, "spec", "template", "metadata", "labels", "access-ml-pipeline") != "true" {
		t.Error("the notebook pod lacks the label access-ml-pipeline: \"true\"")
	}
	podSpec := get(nb, "spec", "template", "spec")
	checkPodSpec(t, "Notebook alice-nb", podSpec, byKind)
	containers := map[string]any{}
	for _, c := range list(podSpec, "containers") {
		containers[str(c, "name")] = c
	}
	side := containers["kfbridge"]
	if side == nil || containers["alice-nb"] == nil {
		t.Fatalf("containers %v, want alice-nb and kfbridge", containers)
	}
	checkSidecar(t, "Notebook alice-nb", side)
	// Shared workspace: the same volume at the same path in both containers.
	if mountOf(side, "/home/jovyan") == "" || mountOf(side, "/home/jovyan") != mountOf(containers["alice-nb"], "/home/jovyan") {
		t.Error("the sidecar and JupyterLab do not share the workspace volume at /home/jovyan")
	}
	if mountOf(side, envValue(side, "KFBRIDGE_DATA_DIR")) == "" {
		t.Error("KFBRIDGE_DATA_DIR is not on a volume")
	}
	if mountOf(containers["alice-nb"], envValue(side, "KFBRIDGE_DATA_DIR")) != "" {
		t.Error("the notebook container mounts kfbridge's data dir (it holds runtime secrets)")
	}

	// The Service reaches the sidecar's port.
	svc := byKind["Service"]["alice-nb-kfbridge"]
	if svc == nil || str(svc, "spec", "selector", "notebook-name") != "alice-nb" {
		t.Errorf("Service: %v", svc)
	} else if tp, _ := get(svc, "spec", "ports", 0, "targetPort").(float64); int(tp) != containerPort(side) {
		t.Errorf("Service targetPort %v, sidecar port %d", tp, containerPort(side))
	}

	// Object-store credentials: the keys the compilers' secretKeyRefs name; RBAC on that Secret.
	cos := byKind["Secret"]["kfbridge-cos-credentials"]
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if str(cos, "stringData", k) == "" {
			t.Errorf("Secret kfbridge-cos-credentials lacks %s", k)
		}
	}
	role := byKind["Role"]["kfbridge-cos-credentials"]
	if role == nil || fmt.Sprint(get(role, "rules", 0, "resourceNames")) != "[kfbridge-cos-credentials]" {
		t.Errorf("Role is not limited to the credentials Secret: %v", get(role, "rules"))
	}
	rb := byKind["RoleBinding"]["kfbridge-cos-credentials"]
	if rb == nil || str(rb, "roleRef", "kind") != "Role" || byKind["Role"][str(rb, "roleRef", "name")] == nil || len(list(rb, "subjects")) == 0 {
		t.Errorf("RoleBinding does not bind the Role: %v", rb)
	}

	// The JSON patch: valid ops, and the container and volumes it adds are consistent.
	var patched map[string]any
	var patchVolumes []any
	for _, d := range docs {
		if d.ops == nil {
			continue
		}
		for i, op := range d.ops {
			o, p := str(op, "op"), str(op, "path")
			if o != "add" || !strings.HasPrefix(p, "/spec/template/spec/") || get(op, "value") == nil {
				t.Errorf("%s op %d: %v", d.file, i, op)
			}
			switch p {
			case "/spec/template/spec/containers/-":
				patched, _ = get(op, "value").(map[string]any)
			case "/spec/template/spec/volumes/-":
				patchVolumes = append(patchVolumes, get(op, "value"))
			}
		}
	}
	if patched == nil {
		t.Fatal("the sidecar patch adds no container")
	}
	checkSidecar(t, "patch", patched)
	vols := map[string]bool{"workspace": true} // the notebook's own, named in the patch comment
	for _, v := range patchVolumes {
		vols[str(v, "name")] = true
	}
	for _, m := range list(patched, "volumeMounts") {
		if !vols[str(m, "name")] {
			t.Errorf("patch mounts volume %q that it does not add", str(m, "name"))
		}
	}
}

// checkSidecar checks the kfbridge container: image, serve, port = KFBRIDGE_ADDR's, probes on
// that port, non-root hardening, env names kfbridge reads.
func checkSidecar(t *testing.T, where string, c any) {
	t.Helper()
	if !strings.HasPrefix(str(c, "image"), "ghcr.io/kfbridge/kfbridge:") || fmt.Sprint(get(c, "args")) != "[serve]" {
		t.Errorf("%s: sidecar image/args %q %v", where, str(c, "image"), get(c, "args"))
	}
	port := containerPort(c)
	addr := envValue(c, "KFBRIDGE_ADDR")
	if port == 0 || !strings.HasSuffix(addr, fmt.Sprintf(":%d", port)) {
		t.Errorf("%s: KFBRIDGE_ADDR %q does not listen on containerPort %d", where, addr, port)
	}
	if p, _ := get(c, "readinessProbe", "httpGet", "port").(float64); int(p) != port || str(c, "readinessProbe", "httpGet", "path") != "/healthz" {
		t.Errorf("%s: readiness probe %v", where, get(c, "readinessProbe"))
	}
	if get(c, "securityContext", "runAsNonRoot") != true || get(c, "securityContext", "allowPrivilegeEscalation") != false {
		t.Errorf("%s: sidecar securityContext %v", where, get(c, "securityContext"))
	}
	if uid, _ := get(c, "securityContext", "runAsUser").(float64); uid == 0 {
		t.Errorf("%s: sidecar runs as uid 0", where)
	}
	if get(c, "securityContext", "readOnlyRootFilesystem") == true && mountOf(c, "/tmp") == "" {
		t.Errorf("%s: read-only root filesystem without a /tmp volume", where)
	}
	root := repoRoot(t)
	for _, e := range list(c, "env") {
		if n := str(e, "name"); strings.HasPrefix(n, "KFBRIDGE_") {
			checkServeEnv(t, root, n)
		}
		if str(e, "name") == "KFBRIDGE_TOKEN" && get(e, "valueFrom", "secretKeyRef") == nil {
			t.Errorf("%s: KFBRIDGE_TOKEN is not taken from a Secret", where)
		}
	}
	if mountOf(c, envValue(c, "KFBRIDGE_WORKSPACE")) == "" {
		t.Errorf("%s: KFBRIDGE_WORKSPACE %q is not a mounted volume", where, envValue(c, "KFBRIDGE_WORKSPACE"))
	}
}

// checkPodSpec: every mount names a volume, every claim and secretKeyRef names an object defined
// in deploy/.
func checkPodSpec(t *testing.T, where string, spec any, byKind map[string]map[string]map[string]any) {
	t.Helper()
	vols := map[string]bool{}
	for _, v := range list(spec, "volumes") {
		vols[str(v, "name")] = true
		if claim := str(v, "persistentVolumeClaim", "claimName"); claim != "" && byKind["PersistentVolumeClaim"][claim] == nil {
			t.Errorf("%s: volume %s claims undefined PVC %s", where, str(v, "name"), claim)
		}
	}
	for _, c := range list(spec, "containers") {
		for _, m := range list(c, "volumeMounts") {
			if !vols[str(m, "name")] {
				t.Errorf("%s: container %s mounts undefined volume %s", where, str(c, "name"), str(m, "name"))
			}
		}
		for _, e := range list(c, "env") {
			ref := get(e, "valueFrom", "secretKeyRef")
			if ref == nil {
				continue
			}
			sec := byKind["Secret"][str(ref, "name")]
			if sec == nil || str(sec, "stringData", str(ref, "key")) == "" {
				t.Errorf("%s: %s references missing Secret key %s/%s", where, str(e, "name"), str(ref, "name"), str(ref, "key"))
			}
		}
	}
}

func containerPort(c any) int {
	p, _ := get(c, "ports", 0, "containerPort").(float64)
	return int(p)
}

func envValue(c any, name string) string {
	for _, e := range list(c, "env") {
		if str(e, "name") == name {
			return str(e, "value")
		}
	}
	return ""
}

// mountOf returns the volume mounted at path in container c.
func mountOf(c any, path string) string {
	for _, m := range list(c, "volumeMounts") {
		if str(m, "mountPath") == path {
			return str(m, "name")
		}
	}
	return ""
}
