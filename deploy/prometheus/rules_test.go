// Package prometheus holds proofline's Prometheus alerting and recording
// rules; this test runs Prometheus' own promtool over them.
package prometheus

import (
	"os/exec"
	"testing"
)

// TestPrometheusRules checks the rules with promtool (Debian's prometheus
// package, installed by scripts/setup.sh) and runs their unit tests
// (tests.yml): the burn-rate alerts fire for a group burning its budget
// and not for one within it, and the pipeline alerts fire on a growing
// signer backlog, export lag, dead letters and an open breaker.
func TestPrometheusRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is missing: scripts/setup.sh installs Debian's prometheus package")
	}
	for _, args := range [][]string{{"check", "rules", "proofline.rules.yml"}, {"test", "rules", "tests.yml"}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
