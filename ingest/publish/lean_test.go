package publish_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProducersStayLean fails when a producer library links a server engine.
// A Go MCP server or a Collector distribution that imports the hook or the
// exporter gets everything they import; a NATS server, the Merkle log or its
// index inside every MCP server would be dead weight and attack surface.
func TestProducersStayLean(t *testing.T) {
	producers := []string{
		"github.com/proofline/proofline/ingest/publish",
		"github.com/proofline/proofline/ingest/outbox",
		"github.com/proofline/proofline/ingest/mcphook",
		"github.com/proofline/proofline/ingest/otelexporter",
	}
	forbidden := []string{
		"github.com/nats-io/nats-server",
		"github.com/transparency-dev/tessera",
		"go.etcd.io/bbolt",
		"github.com/cockroachdb/pebble",
		"github.com/ebitengine/purego",
		"github.com/ClickHouse/",
	}
	for _, p := range producers {
		out, err := exec.Command("go", "list", "-deps", p).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", p, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if strings.HasPrefix(dep, f) {
					t.Errorf("%s links %s", p, dep)
				}
			}
		}
	}
}
