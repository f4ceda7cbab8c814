package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/kfbridge/kfbridge/runs"
)

// Environment variables that supply secrets to `kfbridge runtimes create|update`, so they need not
// sit in a file or appear on a command line. A value in the file wins.
const (
	envAPIPassword = "KFBRIDGE_API_PASSWORD"
	envCOSPassword = "KFBRIDGE_COS_PASSWORD"
)

// secretKeys are the metadata fields that are write-only on the server; --set refuses them because
// command lines are visible to every user of the machine (ps, shell history).
var secretKeys = map[string]string{"api_password": envAPIPassword, "cos_password": envCOSPassword}

const runtimesUsage = `usage: kfbridge %[1]s <command> [flags]

commands:
  list                                  list %[2]s
  get NAME                              print one (secrets show as %[3]q)
  create NAME --from-file F.json        create from an instance file {display_name, metadata:{…}}
                                        (or a bare metadata object); --set KEY=VALUE adds fields
  update NAME [--from-file F.json]      replace; with only --set, change fields of the stored one.
                                        Secrets left out or sent as %[3]q keep their stored values
  delete NAME                           delete
  import [--overwrite] FILE|DIR...      import Elyra metadata files (runtimes and runtime images,
                                        chosen by schema_name; a DIR is Elyra's metadata directory
                                        or one of its schemaspace directories)

Secrets (api_password, cos_password) come from the file or from $%[4]s / $%[5]s,
never from flags, and are never printed. Common flags: --server URL, --token T, --json.
`

// runtimesCmd implements `kfbridge runtimes …` and `kfbridge runtime-images …` against a
// server's /api/v1/<space> API.
func runtimesCmd(ctx context.Context, space string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	what := "runtime configurations (the built-in local runtime and Kubeflow Pipelines runtimes)"
	if space == runs.SchemaspaceRuntimeImages {
		what = "runtime images"
	}
	printUsage := func(w io.Writer) {
		fmt.Fprintf(w, runtimesUsage, space, what, runs.SecretPlaceholder, envAPIPassword, envCOSPassword)
	}
	if len(args) == 0 {
		printUsage(stderr)
		return &exitError{code: 2}
	}
	sub := args[0]
	if sub == "help" || sub == "-h" || sub == "--help" {
		printUsage(stdout)
		return nil
	}
	fs := flag.NewFlagSet("kfbridge "+space+" "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(stderr); fs.PrintDefaults() }
	srv := fs.String("server", envOr(getenv, "KFBRIDGE_SERVER", "http://127.0.0.1:8765"), "kfbridge server URL (env KFBRIDGE_SERVER)")
	token := fs.String("token", getenv("KFBRIDGE_TOKEN"), "API token (env KFBRIDGE_TOKEN)")
	jsonOut := fs.Bool("json", false, "print JSON")
	fromFile := fs.String("from-file", "", "instance JSON file (create, update); - reads stdin")
	overwrite := fs.Bool("overwrite", false, "import: replace instances that already exist")
	var sets stringList
	fs.Var(&sets, "set", "KEY=VALUE: set display_name or a metadata field (repeatable; tags take a comma-separated list)")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if *token == "" {
		return usageErr("an API token is required: pass --token or set KFBRIDGE_TOKEN (the server prints it at start)")
	}
	c := newClient(*srv, *token)
	base := "/api/v1/" + space
	one := func() (string, error) {
		if len(pos) != 1 {
			return "", usageErr("%s %s takes exactly one NAME", space, sub)
		}
		return pos[0], nil
	}
	switch sub {
	case "list":
		if len(pos) != 0 {
			return usageErr("%s list takes no arguments", space)
		}
		var out map[string][]map[string]any
		if err := c.do(ctx, http.MethodGet, base, "", nil, &out); err != nil {
			return fmt.Errorf("list %s: %w", space, err)
		}
		if *jsonOut {
			return writeIndented(stdout, out[space])
		}
		return printInstances(stdout, out[space])
	case "get":
		name, err := one()
		if err != nil {
			return err
		}
		var out map[string]any
		if err := c.do(ctx, http.MethodGet, base+"/"+url.PathEscape(name), "", nil, &out); err != nil {
			return fmt.Errorf("get %s: %w", name, err)
		}
		return writeIndented(stdout, out)
	case "create", "update":
		name, err := one()
		if err != nil {
			return err
		}
		var inst map[string]any
		switch {
		case *fromFile != "":
			if inst, err = readInstanceFile(*fromFile, os.Stdin); err != nil {
				return err
			}
		case sub == "update" && len(sets) > 0:
			// Change fields of the stored instance: its secrets come back as placeholders, which
			// the server keeps.
			if err := c.do(ctx, http.MethodGet, base+"/"+url.PathEscape(name), "", nil, &inst); err != nil {
				return fmt.Errorf("get %s: %w", name, err)
			}
		case sub == "create" && len(sets) > 0:
			inst = map[string]any{}
		default:
			return usageErr("%s %s needs --from-file F.json or --set KEY=VALUE", space, sub)
		}
		if err := prepareInstance(inst, name, space, sets, getenv); err != nil {
			return err
		}
		body, _ := json.Marshal(inst)
		method, path := http.MethodPost, base
		if sub == "update" {
			method, path = http.MethodPut, base+"/"+url.PathEscape(name)
		}
		var out map[string]any
		if err := c.do(ctx, method, path, "application/json", bytes.NewReader(body), &out); err != nil {
			return fmt.Errorf("%s %s: %w", sub, name, err)
		}
		if *jsonOut {
			return writeIndented(stdout, out)
		}
		fmt.Fprintf(stdout, "%s %s %sd\n", kindName(space), out["name"], sub)
		return nil
	case "delete":
		name, err := one()
		if err != nil {
			return err
		}
		if err := c.do(ctx, http.MethodDelete, base+"/"+url.PathEscape(name), "", nil, nil); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
		fmt.Fprintf(stdout, "%s %s deleted\n", kindName(space), name)
		return nil
	case "import":
		if len(pos) == 0 {
			return usageErr("%s import needs at least one FILE or DIR", space)
		}
		return importInstances(ctx, c, pos, *overwrite, stdout, stderr)
	}
	printUsage(stderr)
	return usageErr("%s: unknown command %q", space, sub)
}

// parseInterleaved parses flags that may come before, between or after positional arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &exitError{code: 2}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func kindName(space string) string {
	if space == runs.SchemaspaceRuntimeImages {
		return "runtime image"
	}
	return "runtime"
}

// readInstanceFile reads an instance: Elyra's {display_name, schema_name, metadata} or a bare
// metadata object.
func readInstanceFile(file string, stdin io.Reader) (map[string]any, error) {
	var b []byte
	var err error
	if file == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	var inst map[string]any
	if err := json.Unmarshal(b, &inst); err != nil {
		// json's messages name the offset and the type, never the content.
		return nil, fmt.Errorf("%s: not a JSON object: %w", file, err)
	}
	if _, ok := inst["metadata"]; !ok {
		if _, ok := inst["schema_name"]; !ok {
			inst = map[string]any{"metadata": inst}
		}
	}
	return inst, nil
}

// prepareInstance sets the name and schema, applies --set and fills secrets from the environment.
func prepareInstance(inst map[string]any, name, space string, sets []string, getenv func(string) string) error {
	if n, ok := inst["name"].(string); ok && n != "" && n != name {
		return usageErr("the file names the instance %q, the command line %q", n, name)
	}
	inst["name"] = name
	// Fields only the server's read paths add are dropped, so a `get` output can be edited and
	// sent back as is.
	delete(inst, "resource")
	delete(inst, "reason")
	if _, ok := inst["schema_name"]; !ok {
		if space == runs.SchemaspaceRuntimeImages {
			inst["schema_name"] = runs.SchemaRuntimeImage
		} else {
			inst["schema_name"] = runs.SchemaKFP
		}
	}
	md, _ := inst["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		inst["metadata"] = md
	}
	for _, kv := range sets {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return usageErr("--set %q: want KEY=VALUE", kv)
		}
		if env, secret := secretKeys[k]; secret {
			return usageErr("--set %s: secrets are not taken from the command line; put it in the --from-file file or set $%s", k, env)
		}
		switch k {
		case "display_name", "schema_name":
			inst[k] = v
		case "tags":
			tags := []string{}
			for _, t := range strings.Split(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					tags = append(tags, t)
				}
			}
			md[k] = tags
		default:
			md[k] = v
		}
	}
	if space == runs.SchemaspaceRuntimes {
		for key, env := range secretKeys {
			if v := getenv(env); v != "" {
				if cur, _ := md[key].(string); cur == "" || cur == runs.SecretPlaceholder {
					md[key] = v
				}
			}
		}
	}
	return nil
}

// importInstances sends Elyra metadata files to the server, each to the API of its schemaspace.
func importInstances(ctx context.Context, c *client, paths []string, overwrite bool, stdout, stderr io.Writer) error {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		found := 0
		for _, pat := range []string{"*.json", runs.SchemaspaceRuntimes + "/*.json", runs.SchemaspaceRuntimeImages + "/*.json"} {
			m, _ := filepath.Glob(filepath.Join(p, pat))
			sort.Strings(m)
			files = append(files, m...)
			found += len(m)
		}
		if found == 0 {
			fmt.Fprintf(stderr, "import: no .json files in %s\n", p)
		}
	}
	failed := 0
	for _, f := range files {
		if err := importOne(ctx, c, f, overwrite, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "import %s: %v\n", f, err)
			failed++
		}
	}
	if failed > 0 {
		return &exitError{code: 1, err: fmt.Errorf("import: %d of %d files failed", failed, len(files))}
	}
	return nil
}

func importOne(ctx context.Context, c *client, file string, overwrite bool, stdout, stderr io.Writer) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	inst, err := runs.ParseElyraInstance(b, file)
	if err != nil {
		return err
	}
	if len(inst.Ignored) > 0 {
		fmt.Fprintf(stderr, "import %s: ignoring fields kfbridge does not use: %s\n", file, strings.Join(inst.Ignored, ", "))
	}
	var v any = inst.Runtime
	if inst.Image != nil {
		v = inst.Image
	}
	body, _ := json.Marshal(v)
	base := "/api/v1/" + inst.Schemaspace
	verb := "imported"
	err = c.do(ctx, http.MethodPost, base, "application/json", bytes.NewReader(body), nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusConflict && overwrite {
		verb = "replaced"
		err = c.do(ctx, http.MethodPut, base+"/"+url.PathEscape(inst.Name()), "application/json", bytes.NewReader(body), nil)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s %s (from %s)\n", verb, kindName(inst.Schemaspace), inst.Name(), file)
	return nil
}

func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printInstances prints a table: name, schema, display name and the main setting (the KFP
// endpoint or the image).
func printInstances(w io.Writer, items []map[string]any) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCHEMA\tDISPLAY NAME\tENDPOINT / IMAGE")
	for _, it := range items {
		md, _ := it["metadata"].(map[string]any)
		detail, _ := md["api_endpoint"].(string)
		if detail == "" {
			detail, _ = md["image_name"].(string)
		}
		if detail == "" {
			detail = "-"
		}
		fmt.Fprintf(tw, "%v\t%v\t%v\t%s\n", it["name"], it["schema_name"], it["display_name"], detail)
	}
	return tw.Flush()
}
