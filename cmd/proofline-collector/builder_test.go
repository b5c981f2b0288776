package main

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
	"gopkg.in/yaml.v3"
)

// builderManifest is the part of collector-config/builder-config.yaml the
// tests read.
type builderManifest struct {
	Dist struct {
		OutputPath string `yaml:"output_path"`
	} `yaml:"dist"`
	Extensions []builderModule `yaml:"extensions"`
	Receivers  []builderModule `yaml:"receivers"`
	Processors []builderModule `yaml:"processors"`
	Exporters  []builderModule `yaml:"exporters"`
	Providers  []builderModule `yaml:"providers"`
	Telemetry  builderModule   `yaml:"telemetry"`
}

type builderModule struct {
	GoMod string `yaml:"gomod"`
	Path  string `yaml:"path"`
}

const selfModule = "github.com/proofline/proofline"

func readManifest(t *testing.T) builderManifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "collector-config", "builder-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m builderManifest
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func readGoMod(t *testing.T) *modfile.File {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.ParseLax("go.mod", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestBuilderConfigVersions checks every module builder-config.yaml names
// is at the version go.mod pins, so that ocb builds the distribution this
// repository tests, not a neighbouring release.
func TestBuilderConfigVersions(t *testing.T) {
	m := readManifest(t)
	pinned := map[string]string{}
	for _, r := range readGoMod(t).Require {
		pinned[r.Mod.Path] = r.Mod.Version
	}
	all := slices.Concat(m.Extensions, m.Receivers, m.Processors, m.Exporters, m.Providers, []builderModule{m.Telemetry})
	for _, mod := range all {
		path, version, ok := strings.Cut(mod.GoMod, " ")
		if !ok {
			t.Errorf("gomod %q: want \"module version\"", mod.GoMod)
			continue
		}
		if path == selfModule {
			if mod.Path == "" {
				t.Errorf("%s must be replaced by the working tree (path: .)", selfModule)
			}
			continue
		}
		if pinned[path] != version {
			t.Errorf("builder-config.yaml has %s %s, go.mod %q", path, version, pinned[path])
		}
	}
	if len(m.Extensions) == 0 {
		t.Error("builder-config.yaml lists no extensions; file_storage backs the persistent queue")
	}
}

// TestBuilderConfig runs the Collector Builder (ocb) of the release go.mod
// pins on collector-config/builder-config.yaml exactly as the README says,
// from a tree with no dist/ (a fresh clone), and checks that the
// components.go it generates imports the same components as the
// distribution kept in cmd/proofline-collector. ocb comes from the Go module
// proxy (or the module cache scripts/setup.sh fills): `go run
// go.opentelemetry.io/collector/cmd/builder@VERSION`.
func TestBuilderConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ocb (go run from the module proxy); skipped with -short")
	}
	var version string
	for _, r := range readGoMod(t).Require {
		if r.Mod.Path == "go.opentelemetry.io/collector/otelcol" {
			version = r.Mod.Version
		}
	}
	if version == "" {
		t.Fatal("go.mod does not require go.opentelemetry.io/collector/otelcol")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	// A fresh clone: the repository's files (linked, not copied) without
	// dist/ or bin/.
	clone := t.TempDir()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch e.Name() {
		case ".git", "dist", "bin":
			continue
		}
		if err := os.Symlink(filepath.Join(root, e.Name()), filepath.Join(clone, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("go", "run", "go.opentelemetry.io/collector/cmd/builder@"+version,
		"--config", "collector-config/builder-config.yaml", "--skip-compilation")
	cmd.Dir = clone
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ocb: %v\n%s", err, out)
	}
	out := filepath.Join(clone, readManifest(t).Dist.OutputPath)
	generated := importsOf(t, filepath.Join(out, "components.go"))
	ours := importsOf(t, "components.go")
	if !slices.Equal(generated, ours) {
		t.Fatalf("ocb's components.go imports\n  %v\ncmd/proofline-collector/components.go imports\n  %v", generated, ours)
	}
}

// importsOf returns a Go file's import paths, sorted.
func importsOf(t *testing.T, path string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, imp := range f.Imports {
		p, err := strconv.Unquote(imp.Path.Value)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}
