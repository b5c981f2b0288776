package mcphook

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/proofline/proofline/schemas"
)

// MetaElevation is the _meta key of a call's elevation, set by a gateway
// in front of the server (read only with Config.ElevationFromMeta) or by
// the client hook from its Identity: {"scopes": [...], "approver": "...",
// "reason": "...", "expires": "RFC 3339"}.
const MetaElevation = "proofline/elevation"

// TokenElevation is the key of a verified bearer token's Extra that
// DefaultIdentify reads the caller's elevation from, in the same shape as
// MetaElevation (a map, or a *schemas.Elevation set by a Go verifier).
const TokenElevation = "elevation"

// errElevation is an elevation claim the hook cannot read; the call is
// refused rather than run without its evidence.
var errElevation = errors.New("invalid elevation")

// parseElevation reads an elevation claim from a token's Extra or a
// request's _meta. It is as strict as the call record's schema, so that
// a claim the hook accepts always fits in the record.
func parseElevation(v any) (*schemas.Elevation, error) {
	switch e := v.(type) {
	case nil:
		return nil, nil
	case *schemas.Elevation:
		if e == nil {
			return nil, nil
		}
		return checkElevation(e)
	case map[string]any:
		out := &schemas.Elevation{}
		for k, f := range e {
			switch k {
			case "scopes":
				list, ok := f.([]any)
				if !ok {
					if ss, ok2 := f.([]string); ok2 {
						out.Scopes = append(out.Scopes, ss...)
						continue
					}
					return nil, fmt.Errorf("%w: scopes is not a list of strings", errElevation)
				}
				for _, s := range list {
					str, ok := s.(string)
					if !ok {
						return nil, fmt.Errorf("%w: scopes is not a list of strings", errElevation)
					}
					out.Scopes = append(out.Scopes, str)
				}
			case "approver", "reason", "expires":
				str, ok := f.(string)
				if !ok {
					return nil, fmt.Errorf("%w: %s is not a string", errElevation, k)
				}
				switch k {
				case "approver":
					out.Approver = str
				case "reason":
					out.Reason = str
				default:
					t, err := schemas.ParseTimestamp(str)
					if err != nil {
						return nil, fmt.Errorf("%w: expires: %w", errElevation, err)
					}
					out.Expires = &schemas.Timestamp{Time: t}
				}
			default:
				return nil, fmt.Errorf("%w: unknown field %q (scopes, approver, reason, expires)", errElevation, k)
			}
		}
		return checkElevation(out)
	default:
		return nil, fmt.Errorf("%w: %T is not an object", errElevation, v)
	}
}

// checkElevation holds a claim to the record schema's limits.
func checkElevation(e *schemas.Elevation) (*schemas.Elevation, error) {
	if len(e.Scopes) == 0 || len(e.Scopes) > 64 {
		return nil, fmt.Errorf("%w: %d scopes, want 1 to 64", errElevation, len(e.Scopes))
	}
	for _, s := range e.Scopes {
		if s == "" || utf8.RuneCountInString(s) > 256 {
			return nil, fmt.Errorf("%w: a scope is empty or over 256 characters", errElevation)
		}
	}
	if utf8.RuneCountInString(e.Approver) > 256 || utf8.RuneCountInString(e.Reason) > 4096 {
		return nil, fmt.Errorf("%w: approver over 256 or reason over 4096 characters", errElevation)
	}
	if e.Expires != nil && (e.Expires.UTC().Year() < 1970 || e.Expires.UTC().Year() > 2261) {
		return nil, fmt.Errorf("%w: expires out of range", errElevation)
	}
	return e, nil
}

// active is the elevation while it holds at now: nil once expired.
func activeElevation(e *schemas.Elevation, now time.Time) *schemas.Elevation {
	if e == nil || (e.Expires != nil && !now.Before(e.Expires.Time)) {
		return nil
	}
	return e
}

// elevationMeta is e in MetaElevation's shape, for the client hook to
// hand its identity's elevation to the server.
func elevationMeta(e *schemas.Elevation) map[string]any {
	m := map[string]any{"scopes": e.Scopes}
	if e.Approver != "" {
		m["approver"] = e.Approver
	}
	if e.Reason != "" {
		m["reason"] = e.Reason
	}
	if e.Expires != nil {
		m["expires"] = e.Expires.UTC().Format(time.RFC3339Nano)
	}
	return m
}
