package bus

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestRefused: start-up gives up on errors that retrying cannot fix, and
// keeps retrying an outage.
func TestRefused(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"authorization", nats.ErrAuthorization, true},
		{"expired", fmt.Errorf("connect: %w", nats.ErrAuthExpired), true},
		{"TLS required, not configured", nats.ErrSecureConnRequired, true},
		{"unknown CA", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, true},
		{"wrong host name", &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "nats-1"}}, true},
		{"client certificate rejected", tls.AlertError(42), true},
		{"server down", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, false},
		{"no servers", nats.ErrNoServers, false},
		{"timeout", nats.ErrTimeout, false},
		{"none", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := refused(tc.err); got != tc.want {
				t.Fatalf("refused(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
