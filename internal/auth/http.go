package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

type ctxKey struct{}

// FromContext returns the claims Require put on the request context.
func FromContext(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(ctxKey{}).(*Claims)
	return c, ok
}

// BearerToken extracts the token of an "Authorization: Bearer" header.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Require wraps next so it only runs with a valid token allowing scope.
// A missing, invalid or expired token gets 401, a wrong scope 403; onError
// writes the response so that every API answers errors the same way.
func (k *Keys) Require(scope Scope, onError func(w http.ResponseWriter, status int, err error), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := k.Verify(BearerToken(r), scope)
		if err != nil {
			status := http.StatusUnauthorized
			if errors.Is(err, ErrScope) {
				status = http.StatusForbidden
			} else {
				w.Header().Set("WWW-Authenticate", `Bearer realm="proofline"`)
			}
			onError(w, status, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
	})
}
