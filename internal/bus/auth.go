package bus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// ClientAuth is how proofline proves itself to an external NATS deployment
// and checks that it reached the right one. Production clusters give every
// client its own identity (a decentralized JWT user, or an nkey) and speak
// TLS; a URL can carry neither safely (a password in a URL shows in ps and
// in logs). Secrets are read from files for the same reason.
type ClientAuth struct {
	// CredsFile is a NATS credentials file (a user JWT and its nkey seed,
	// as `nsc` writes them), for servers in operator mode.
	CredsFile string
	// NKeyFile holds a user nkey seed, for servers that list nkey users.
	NKeyFile string
	// TokenFile holds a token, for servers with token authorization.
	TokenFile string
	// CAFile is a PEM bundle of the roots that sign the servers'
	// certificates. Setting it makes TLS mandatory.
	CAFile string
	// CertFile and KeyFile are a client certificate and its key, for
	// servers that verify clients (mutual TLS). Both or neither.
	CertFile, KeyFile string
}

// IsZero reports whether no setting is given.
func (a ClientAuth) IsZero() bool { return a == ClientAuth{} }

// Validate checks the combination of settings and that every file given
// can be read and parsed, so that a typo fails at start with the file's
// name rather than as a connection that never comes up.
func (a ClientAuth) Validate() error {
	n := 0
	for _, f := range []string{a.CredsFile, a.NKeyFile, a.TokenFile} {
		if f != "" {
			n++
		}
	}
	if n > 1 {
		return errors.New("nats credentials: give one of a creds file, an nkey seed file or a token file")
	}
	if (a.CertFile == "") != (a.KeyFile == "") {
		return errors.New("nats tls: a client certificate needs its key, and a key its certificate")
	}
	if a.CredsFile != "" {
		if err := checkCreds(a.CredsFile); err != nil {
			return err
		}
	}
	if a.NKeyFile != "" {
		if _, err := nats.NkeyOptionFromSeed(a.NKeyFile); err != nil {
			return fmt.Errorf("nats nkey seed file %s: %w", a.NKeyFile, err)
		}
	}
	if a.TokenFile != "" {
		if _, err := readToken(a.TokenFile); err != nil {
			return err
		}
	}
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return fmt.Errorf("nats tls ca file: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("nats tls ca file %s: no PEM certificate in it", a.CAFile)
		}
	}
	if a.CertFile != "" {
		if _, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile); err != nil {
			return fmt.Errorf("nats tls client certificate: %w", err)
		}
	}
	return nil
}

// Options turns the settings into NATS client options. The creds, CA and
// certificate files are read again at every (re)connect by the client, so
// rotating them on disk needs no restart.
func (a ClientAuth) Options() ([]nats.Option, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	var opts []nats.Option
	switch {
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.NKeyFile != "":
		o, err := nats.NkeyOptionFromSeed(a.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed file %s: %w", a.NKeyFile, err)
		}
		opts = append(opts, o)
	case a.TokenFile != "":
		tok, err := readToken(a.TokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Token(tok))
	}
	if a.CAFile != "" {
		opts = append(opts, nats.RootCAs(a.CAFile))
	}
	if a.CertFile != "" {
		opts = append(opts, nats.ClientCert(a.CertFile, a.KeyFile))
	}
	return opts, nil
}

// checkCreds parses a creds file as the client will at every connect.
func checkCreds(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("nats creds file: %w", err)
	}
	if _, err := jwt.ParseDecoratedJWT(b); err != nil {
		return fmt.Errorf("nats creds file %s: %w", path, err)
	}
	kp, err := jwt.ParseDecoratedUserNKey(b)
	if err != nil {
		return fmt.Errorf("nats creds file %s: %w", path, err)
	}
	kp.Wipe()
	return nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("nats token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("nats token file %s is empty", path)
	}
	return tok, nil
}

// refused reports whether err means the server will not accept this
// client as configured (bad or expired credentials, a certificate it does
// not trust or that does not trust it): retrying cannot help, so start-up
// stops and says so instead of waiting out its retries.
func refused(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired) ||
		errors.Is(err, nats.ErrSecureConnRequired) || errors.Is(err, nats.ErrSecureConnWanted) {
		return true
	}
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var alert tls.AlertError
	return errors.As(err, &unknownAuthority) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &alert)
}
