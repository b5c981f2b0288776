// Package proofline_test holds checks on the repository as a whole.
package proofline_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestReadmeNamesOnlyTestsThatExist: every guarantee in README.md names the
// test that shows it, so a test the README names must exist somewhere in
// the tree. Without this check a guarantee can outlive its proof: the
// crash guarantee cited TestKill9DuringIngest for months after the test
// was deleted.
func TestReadmeNamesOnlyTestsThatExist(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bTest[A-Z]\w*`).FindAllString(string(readme), -1) {
		named[m] = true
	}
	if len(named) == 0 {
		t.Fatal("README.md names no test at all; is this the right README?")
	}
	exist := testFuncs(t, ".")
	var missing []string
	for name := range named {
		if !exist[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("README.md names tests that do not exist in any *_test.go file: %s", strings.Join(missing, ", "))
	}
}

// testFuncs is the set of top-level Test functions in the *_test.go files
// under root, parsed (not grepped, so a name in a comment or a string does
// not count).
func testFuncs(t *testing.T, root string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "testdata" || d.Name() == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Test") {
				out[fn.Name.Name] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
