// Package auth issues and checks proofline's bearer tokens: short-lived
// JWTs signed with an Ed25519 key held in the data directory, carrying the
// principal (who is calling) and one scope (what it may do).
//
// JWT via github.com/golang-jwt/jwt/v5 is used rather than a bespoke format
// so that gateways can inspect tokens with ordinary tooling.
package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Scope is what a token allows.
type Scope string

// Scopes. Admin satisfies every other scope.
const (
	ScopeIngest Scope = "ingest"
	ScopeQuery  Scope = "query"
	ScopeAdmin  Scope = "admin"
)

// ParseScope checks a scope name.
func ParseScope(s string) (Scope, error) {
	switch sc := Scope(s); sc {
	case ScopeIngest, ScopeQuery, ScopeAdmin:
		return sc, nil
	}
	return "", fmt.Errorf("unknown scope %q (want ingest, query or admin)", s)
}

const issuer = "proofline"

// MaxTTL bounds token lifetime: tokens are meant to be short-lived and
// re-issued, not long-term credentials.
const MaxTTL = 30 * 24 * time.Hour

var (
	// ErrMissing: no bearer token on the request.
	ErrMissing = errors.New("missing bearer token")
	// ErrInvalid: malformed, badly signed or not ours.
	ErrInvalid = errors.New("invalid token")
	// ErrExpired: the token's lifetime is over.
	ErrExpired = errors.New("token expired")
	// ErrScope: valid, but not for this operation.
	ErrScope = errors.New("token scope does not allow this operation")
)

var principalRE = regexp.MustCompile(`^[A-Za-z0-9._:@-]{1,128}$`)

// Claims are what a verified token says.
type Claims struct {
	Principal string
	Scope     Scope
	ExpiresAt time.Time
}

type jwtClaims struct {
	Scope Scope `json:"scope"`
	jwt.RegisteredClaims
}

// Keys signs and verifies tokens.
type Keys struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	now  func() time.Time
}

// NewKeys wraps an Ed25519 private key.
func NewKeys(priv ed25519.PrivateKey) *Keys {
	return &Keys{priv: priv, pub: priv.Public().(ed25519.PublicKey), now: time.Now}
}

// LoadOrCreateKeys reads the token-signing key at path, creating it (mode
// 0600) on first use.
func LoadOrCreateKeys(path string) (*Keys, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, fmt.Errorf("generate token key: %w", gerr)
		}
		der, merr := x509.MarshalPKCS8PrivateKey(priv)
		if merr != nil {
			return nil, fmt.Errorf("marshal token key: %w", merr)
		}
		f, oerr := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if oerr != nil {
			if errors.Is(oerr, os.ErrExist) { // created concurrently: use that one
				return LoadOrCreateKeys(path)
			}
			return nil, fmt.Errorf("create token key: %w", oerr)
		}
		werr := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return nil, fmt.Errorf("write token key: %w", werr)
		}
		return NewKeys(priv), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read token key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("token key %s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("token key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("token key %s: not an Ed25519 key", path)
	}
	return NewKeys(priv), nil
}

// Issue signs a token for principal with scope, valid for ttl.
func (k *Keys) Issue(principal string, scope Scope, ttl time.Duration) (string, error) {
	if !principalRE.MatchString(principal) {
		return "", fmt.Errorf("principal %q: want 1-128 of [A-Za-z0-9._:@-]", principal)
	}
	if _, err := ParseScope(string(scope)); err != nil {
		return "", err
	}
	if ttl <= 0 || ttl > MaxTTL {
		return "", fmt.Errorf("ttl %s: want between 1s and %s", ttl, MaxTTL)
	}
	now := k.now()
	id := make([]byte, 12)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwtClaims{
		Scope: scope,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   principal,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        fmt.Sprintf("%x", id),
		},
	})
	return t.SignedString(k.priv)
}

// Verify checks a token's signature, expiry and that its scope allows want.
func (k *Keys) Verify(token string, want Scope) (*Claims, error) {
	if token == "" {
		return nil, ErrMissing
	}
	var c jwtClaims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return k.pub, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(k.now),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrExpired
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if !principalRE.MatchString(c.Subject) {
		return nil, fmt.Errorf("%w: bad principal", ErrInvalid)
	}
	if !Allows(c.Scope, want) {
		return nil, fmt.Errorf("%w: token has scope %q, %q needed", ErrScope, c.Scope, want)
	}
	return &Claims{Principal: c.Subject, Scope: c.Scope, ExpiresAt: c.ExpiresAt.Time}, nil
}

// Allows reports whether a token with scope have may do what want needs.
func Allows(have, want Scope) bool {
	return have == want || have == ScopeAdmin && slices.Contains([]Scope{ScopeIngest, ScopeQuery, ScopeAdmin}, want)
}
