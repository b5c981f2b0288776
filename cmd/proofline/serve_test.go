package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestServeRefusesBadKPIFlags: a serve start with a KPI flag that cannot
// be used stops before anything starts, naming the flag.
func TestServeRefusesBadKPIFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cost-currency", ""}, "--cost-currency: empty"},
		{[]string{"--cost-currency", "  "}, "--cost-currency: empty"},
		{[]string{"--cost-monthly-cap", "-1"}, "--cost-monthly-cap: -1 is negative"},
		{[]string{"--cost-new-tool-cap-share", "1.5"}, "--cost-new-tool-cap-share: 1.5"},
		{[]string{"--plan-seal-every", "0s"}, "--plan-seal-every: 0s"},
		{[]string{"--plan-max-duration", "0s"}, "--plan-max-duration: 0"},
		{[]string{"--plan-max-duration", "90m"}, "--plan-max-duration: 1h30m0s, want a whole number of hours"},
		{[]string{"--plan-max-duration", "169h"}, "--plan-max-duration: 169h0m0s"},
	} {
		var stderr bytes.Buffer
		dir := t.TempDir()
		err := cmdServe(context.Background(), append([]string{"--data", dir, "--listen", "127.0.0.1:0"}, tc.args...), &stderr)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve %v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
