package bus

import (
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestRetentionByServerVersion: interest retention only on servers known
// to keep such records across restarts; the others keep every record for
// a fixed age, as before.
func TestRetentionByServerVersion(t *testing.T) {
	tests := []struct {
		version string
		maxAge  time.Duration // configured
		want    jetstream.RetentionPolicy
		wantAge time.Duration
	}{
		{"2.9.10", 0, jetstream.LimitsPolicy, 7 * 24 * time.Hour},
		{"2.9.10", time.Hour, jetstream.LimitsPolicy, time.Hour},
		{"2.10.28", 0, jetstream.LimitsPolicy, 7 * 24 * time.Hour},
		{"2.10.29", 0, jetstream.InterestPolicy, 0},
		{"2.11.12", 0, jetstream.InterestPolicy, 0},
		{"2.12.0-RC.1", 0, jetstream.InterestPolicy, 0},
		{"2.15.2", 30 * 24 * time.Hour, jetstream.InterestPolicy, 30 * 24 * time.Hour},
		{"3.0.0", 0, jetstream.InterestPolicy, 0},
		{"", 0, jetstream.LimitsPolicy, 7 * 24 * time.Hour},
		{"garbage", 0, jetstream.LimitsPolicy, 7 * 24 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.version, func(t *testing.T) {
			b := &Bus{cfg: Config{MaxAge: tc.maxAge, Logger: slog.New(slog.DiscardHandler)}}
			b.decideRetention(tc.version)
			c := b.StreamConfig()
			if c.Retention != tc.want || c.MaxAge != tc.wantAge {
				t.Fatalf("nats-server %q: retention %v, max age %v; want %v, %v", tc.version, c.Retention, c.MaxAge, tc.want, tc.wantAge)
			}
		})
	}
}
