package api

import (
	"strings"
	"testing"
	"time"
)

// TestTimeRangeBounds: a request's times are RFC 3339 from 1970 to 2100
// (the engine's DateTime holds 1970 to 2106); the zero time is refused
// rather than read as "unset", and from must come before to.
func TestTimeRangeBounds(t *testing.T) {
	for _, c := range []struct {
		from, to string
		err      string
	}{
		{"2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z", ""},
		{"1970-01-01T00:00:00Z", "2099-12-31T23:59:59.999Z", ""},
		{"", "2026-12-01T00:00:00+01:00", ""},
		{"0001-01-01T00:00:00Z", "", "from must be a time from 1970 to 2100"},
		{"1969-12-31T23:59:59Z", "", "from must be a time from 1970 to 2100"},
		{"", "9999-12-31T23:59:00Z", "to must be a time from 1970 to 2100"},
		{"", "2100-01-01T00:00:00Z", "to must be a time from 1970 to 2100"},
		{"yesterday", "", "from must be an RFC 3339 time"},
		{"yesterday", "tomorrow", "from must be an RFC 3339 time; to must be an RFC 3339 time"},
		{"1969-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "from must be a time from 1970 to 2100; to must be a time from 1970 to 2100"},
		{"2026-12-01T00:00:00Z", "2026-11-01T00:00:00Z", "from must be before to"},
	} {
		from, to, err := timeRange(c.from, c.to, 24*time.Hour)
		if c.err == "" {
			if err != nil || from.Location() != time.UTC || to.Location() != time.UTC {
				t.Errorf("from %q to %q: %v (%v, %v), want a UTC range", c.from, c.to, err, from, to)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("from %q to %q: %v, want %q", c.from, c.to, err, c.err)
		}
	}
}
