package schemas

import (
	"bytes"
	"fmt"
	"math"
	"strconv"

	"github.com/go-json-experiment/json/jsontext"
)

// I-JSON (RFC 7493) is the profile of JSON that has one reading: no
// duplicate member names, no lone surrogates, numbers a double holds. A
// call record is evidence, so it must mean the same to proofline, to a
// SIEM that reads the raw request and to a person: a record that is JSON
// but not I-JSON is rejected, never "repaired". encoding/json (under the
// schema path) would keep the last of two equal names and turn a lone
// surrogate into U+FFFD; strconv turns 1e-400 into 0. The fast path never
// accepts such input (the scanner takes no escapes and no repeated names,
// JSON v2 rejects both, and both paths check numbers and timestamps), so
// the schema path reports them, with ijsonErrors.

// maxExactInt is the largest integer every I-JSON reader holds exactly
// (RFC 7493 §2.2: 2^53-1).
const maxExactInt = 1<<53 - 1

// ijsonErrors lists, by JSON path, every place where data — a JSON text
// the caller has already found well-formed and valid UTF-8 — is not
// I-JSON. The tokens come from jsontext (told to let duplicates and lone
// surrogates through, so that every one is found and named rather than
// only the first); the checks on them are written here because no
// decoder reports them by path.
func ijsonErrors(data []byte) ([]FieldError, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(data),
		jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	// One frame per open object or array. Names are slices of data (or
	// unquoted copies when escaped) and paths are built only for an error:
	// a clean record costs no allocation per member.
	type frame struct {
		obj      bool
		names    [][]byte            // the object's member names so far
		set      map[string]struct{} // names, once there are many (a 64 KiB object can have thousands)
		wantName bool
		n        int // the array's elements so far
	}
	var (
		out   []FieldError
		stack []frame
	)
	// path is the JSON path of the value being read (the last name of each
	// object, the last index of each array).
	path := func() string {
		p := []byte("$")
		for _, f := range stack {
			if f.obj {
				p = append(append(p, '.'), f.names[len(f.names)-1]...)
			} else {
				p = strconv.AppendInt(append(p, '['), int64(f.n-1), 10)
				p = append(p, ']')
			}
		}
		return string(p)
	}
	for {
		kind := dec.PeekKind()
		var top *frame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		if kind == '}' || kind == ']' {
			if _, err := dec.ReadToken(); err != nil {
				return nil, err
			}
			if stack = stack[:len(stack)-1]; len(stack) == 0 {
				return out, nil
			}
			continue
		}
		if top != nil && top.obj && top.wantName {
			v, err := dec.ReadValue()
			if err != nil {
				return nil, err
			}
			raw := inData(data, dec, v)
			name := raw[1 : len(raw)-1]
			lone := loneSurrogate(raw)
			if !lone && bytes.IndexByte(name, '\\') >= 0 {
				if u, err := jsontext.AppendUnquote(nil, raw); err == nil {
					name = u
				}
			}
			dup := false
			if top.set == nil && len(top.names) == 16 {
				top.set = make(map[string]struct{}, 64)
				for _, n := range top.names {
					top.set[string(n)] = struct{}{}
				}
			}
			if top.set != nil {
				_, dup = top.set[string(name)]
				top.set[string(name)] = struct{}{}
			} else {
				for _, n := range top.names {
					dup = dup || bytes.Equal(n, name)
				}
			}
			top.names = append(top.names, name)
			top.wantName = false
			if lone {
				out = append(out, FieldError{Path: path(), Message: "member name has a lone surrogate escape (not I-JSON, RFC 7493 §2.1)"})
			}
			if dup {
				out = append(out, FieldError{Path: path(), Message: "duplicate member name (not I-JSON, RFC 7493 §2.3)"})
			}
			continue
		}
		switch {
		case top == nil:
		case top.obj:
			top.wantName = true
		default:
			top.n++
		}
		switch kind {
		case '{', '[':
			if _, err := dec.ReadToken(); err != nil {
				return nil, err
			}
			stack = append(stack, frame{obj: kind == '{', wantName: true})
			continue
		}
		v, err := dec.ReadValue()
		if err != nil {
			return nil, err
		}
		switch kind {
		case '"':
			if loneSurrogate(v) {
				out = append(out, FieldError{Path: path(), Message: "string has a lone surrogate escape (not I-JSON, RFC 7493 §2.1)"})
			}
		case '0':
			if msg := numberProblem(v); msg != "" {
				out = append(out, FieldError{Path: path(), Message: msg})
			}
		}
		if len(stack) == 0 {
			return out, nil
		}
	}
}

// inData is the value v just read by dec as a slice of data, which stays
// valid after the next read (v does not).
func inData(data []byte, dec *jsontext.Decoder, v jsontext.Value) []byte {
	end := int(dec.InputOffset())
	return data[end-len(v) : end : end]
}

// loneSurrogate reports whether a quoted JSON string (valid syntax) has a
// \u escape of a UTF-16 surrogate that is not half of a high-low pair.
func loneSurrogate(quoted []byte) bool {
	b := quoted
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] != 'u' {
			i++ // skip the escaped character, which may be a backslash
			continue
		}
		r := hex4(b[i+2 : i+6])
		i += 5 // at the last hex digit
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 < len(b) && b[i+1] == '\\' && b[i+2] == 'u' {
				if lo := hex4(b[i+3 : i+7]); lo >= 0xDC00 && lo <= 0xDFFF {
					i += 6
					continue
				}
			}
			return true
		}
	}
	return false
}

func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c-'a') + 10
		case c >= 'A' && c <= 'F':
			r |= rune(c-'A') + 10
		}
	}
	return r
}

// numberProblem says why a JSON number literal (valid syntax) is not one
// an IEEE 754 double holds as sent, or "" if it is.
func numberProblem(lit []byte) string {
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil || math.IsInf(f, 0) {
		return fmt.Sprintf("number %s is out of the range of a double (not I-JSON, RFC 7493 §2.2)", lit)
	}
	if f == 0 && nonZeroMantissa(lit) {
		return fmt.Sprintf("number %s underflows to 0 in a double (not I-JSON, RFC 7493 §2.2)", lit)
	}
	if (f > maxExactInt || f < -maxExactInt) && !bytes.ContainsAny(lit, ".eE") {
		return fmt.Sprintf("integer %s is beyond ±(2^53-1), not exact in a double (not I-JSON, RFC 7493 §2.2)", lit)
	}
	return ""
}

// nonZeroMantissa reports whether a number literal's digits before any
// exponent include a non-zero one: such a number is not 0, whatever a
// double makes of it.
func nonZeroMantissa(lit []byte) bool {
	for _, c := range lit {
		switch {
		case c == 'e' || c == 'E':
			return false
		case c >= '1' && c <= '9':
			return true
		}
	}
	return false
}
