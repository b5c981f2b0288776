package schemas

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// CallRecordV1Schema is the JSON Schema of call record v1.
//
//go:embed callrecord.v1.json
var CallRecordV1Schema []byte

// SchemaID is the $id of CallRecordV1Schema.
const SchemaID = "https://proofline.dev/schemas/callrecord.v1.json"

// Limits of one record.
const (
	MaxRecordBytes = 64 << 10
	MaxAttributes  = 64
)

var (
	// ErrTooLarge: the record is over MaxRecordBytes.
	ErrTooLarge = errors.New("record larger than 64 KiB")
	// ErrInvalidUTF8: the record has bytes that are not UTF-8.
	ErrInvalidUTF8 = errors.New("record is not valid UTF-8")
	// ErrMalformed: not a JSON object.
	ErrMalformed = errors.New("record is not a JSON object")
	// ErrInvalid: a JSON object that breaks the contract; the error is a
	// *ValidationError listing every bad field.
	ErrInvalid = errors.New("record is invalid")
)

// FieldError is one bad field, by JSON path ($.tool.name, $.scope_grants[3]).
type FieldError struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// ValidationError lists every bad field of a record.
type ValidationError struct {
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Errors))
	for i, f := range e.Errors {
		parts[i] = f.Path + ": " + f.Message
	}
	return fmt.Sprintf("%d invalid field(s): %s", len(e.Errors), strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrInvalid) true for a ValidationError.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// compiled is the compiled schema: immutable once built, shared by every
// decode in the process.
var compiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(CallRecordV1Schema))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(SchemaID, doc); err != nil {
		return nil, err
	}
	return c.Compile(SchemaID)
})

var printer = message.NewPrinter(language.English)

// Decode decodes and validates one call record. Every problem is reported:
// a record with three bad fields gets a ValidationError with three entries.
func Decode(data []byte) (*CallRecord, error) {
	r, _, err := decode(data)
	return r, err
}

// DecodeFrom is Decode for ingest: it also sets the record's ingested_by
// to principal, whatever data said, and returns the record's canonical
// form with it. When data is already canonical but for ingested_by (as
// CallRecord.Canonical writes it), the form is data with the principal put in
// place, not the record encoded again: the same bytes
// (FuzzDecodeCanonical), without the encoder's work (about a tenth of
// ingest's per-record decoding, bench/RESULTS.md).
func DecodeFrom(data []byte, principal string) (*CallRecord, []byte, error) {
	r, sc, err := decode(data)
	if err != nil {
		return nil, nil, err
	}
	r.IngestedBy = principal
	if sc.canonical {
		return r, sc.restamp(data, principal), nil
	}
	c, err := r.canonical()
	if err != nil {
		return nil, nil, err
	}
	return r, c, nil
}

// restamp returns canonical data with ingested_by set to principal
// (omitted when empty, as the canonical form omits it).
func (sc scanned) restamp(data []byte, principal string) []byte {
	var before, after []byte
	if sc.beforeEnd > 0 {
		before = data[1:sc.beforeEnd]
	}
	if sc.afterStart > 0 {
		after = data[sc.afterStart : len(data)-1]
	}
	w := &jcsWriter{b: make([]byte, 0, len(before)+len(after)+len(principal)+24)}
	w.b = append(w.b, '{')
	w.b = append(w.b, before...)
	if principal != "" {
		if len(before) > 0 {
			w.b = append(w.b, ',')
		}
		w.str("ingested_by")
		w.b = append(w.b, ':')
		w.str(principal)
	}
	if len(after) > 0 {
		if len(w.b) > 1 {
			w.b = append(w.b, ',')
		}
		w.b = append(w.b, after...)
	}
	w.b = append(w.b, '}')
	return w.b
}

// decode is Decode, with what the scanner learnt about data when it
// decoded it (the zero value when another path did).
func decode(data []byte) (*CallRecord, scanned, error) {
	if len(data) > MaxRecordBytes {
		return nil, scanned{}, fmt.Errorf("%w (%d bytes)", ErrTooLarge, len(data))
	}
	// encoding/json would silently replace invalid UTF-8 with U+FFFD: the
	// record stored would not be the record sent.
	if !utf8.Valid(data) {
		return nil, scanned{}, ErrInvalidUTF8
	}
	if r, sc, ok := decodeFast(data); ok {
		return r, sc, nil
	}
	r, err := decodeSchema(data)
	return r, scanned{}, err
}

// decodeSchema validates against the JSON Schema and reports every bad
// field; Decode uses it whenever the fast path is not sure.
func decodeSchema(data []byte) (*CallRecord, error) {
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	obj, ok := inst.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: got %s", ErrMalformed, jsonKind(inst))
	}
	// JSON that is not I-JSON has no single reading (which of two equal
	// names counts?), so the schema's view of it, built by encoding/json,
	// would already be a choice: report only where it is not I-JSON.
	if bad, err := ijsonErrors(data); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	} else if len(bad) > 0 {
		return nil, newValidationError(bad)
	}
	sch, err := compiled()
	if err != nil {
		return nil, fmt.Errorf("compile call record schema: %w", err)
	}
	var fields []FieldError
	if err := sch.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return nil, fmt.Errorf("validate: %w", err)
		}
		fields = leafErrors(ve, fields)
	}
	fields = append(fields, semanticErrors(obj)...)
	if len(fields) > 0 {
		return nil, newValidationError(fields)
	}
	var r CallRecord
	if err := json.Unmarshal(data, &r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, newValidationError([]FieldError{{Path: "$." + te.Field, Message: "want " + te.Type.String()}})
		}
		return nil, newValidationError([]FieldError{{Path: "$", Message: err.Error()}})
	}
	return &r, nil
}

func newValidationError(fields []FieldError) *ValidationError {
	sort.SliceStable(fields, func(i, j int) bool { return fields[i].Path < fields[j].Path })
	return &ValidationError{Errors: fields}
}

// leafErrors flattens the schema validator's error tree into one error per
// bad field; the inner nodes only say "some subschema failed".
func leafErrors(ve *jsonschema.ValidationError, out []FieldError) []FieldError {
	if len(ve.Causes) > 0 {
		for _, c := range ve.Causes {
			out = leafErrors(c, out)
		}
		return out
	}
	base := jsonPath(ve.InstanceLocation)
	switch k := ve.ErrorKind.(type) {
	case *kind.Required:
		for _, p := range k.Missing {
			out = append(out, FieldError{Path: base + "." + p, Message: "required"})
		}
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			out = append(out, FieldError{Path: base + "." + p, Message: "unknown field"})
		}
	default:
		out = append(out, FieldError{Path: base, Message: ve.ErrorKind.LocalizedString(printer)})
	}
	return out
}

// jsonPath turns a JSON pointer's tokens into $.a.b[0].
func jsonPath(tokens []string) string {
	var b strings.Builder
	b.WriteString("$")
	for _, t := range tokens {
		if isIndex(t) {
			b.WriteString("[" + t + "]")
		} else {
			b.WriteString("." + t)
		}
	}
	return b.String()
}

func isIndex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// semanticErrors checks what JSON Schema cannot express.
func semanticErrors(obj map[string]any) []FieldError {
	var out []FieldError
	times := map[string]int64{}
	for _, f := range []string{"ts_start", "ts_end"} {
		s, ok := obj[f].(string)
		if !ok {
			continue // the schema reports it
		}
		t, err := ParseTimestamp(s)
		if err != nil {
			out = append(out, FieldError{Path: "$." + f, Message: err.Error()})
			continue
		}
		times[f] = t.UnixNano()
		// Spans are stored with nanosecond precision in 64 bits, which
		// covers 1970 to 2262.
		if !yearOK(t.Year()) {
			out = append(out, FieldError{Path: "$." + f, Message: "year out of range 1970-2261"})
		}
	}
	if e, ok := obj["elevation"].(map[string]any); ok {
		if s, ok := e["expires"].(string); ok {
			if t, err := ParseTimestamp(s); err != nil {
				out = append(out, FieldError{Path: "$.elevation.expires", Message: err.Error()})
			} else if !yearOK(t.Year()) {
				out = append(out, FieldError{Path: "$.elevation.expires", Message: "year out of range 1970-2261"})
			}
		}
	}
	if s, okS := times["ts_start"]; okS {
		if e, okE := times["ts_end"]; okE && e < s {
			out = append(out, FieldError{Path: "$.ts_end", Message: "before ts_start"})
		}
	}
	if tr, ok := obj["trace"].(map[string]any); ok {
		for _, f := range []string{"trace_id", "span_id", "parent_span_id"} {
			if s, ok := tr[f].(string); ok && s != "" && strings.Trim(s, "0") == "" {
				out = append(out, FieldError{Path: "$.trace." + f, Message: "must not be all zeros (W3C trace context)"})
			}
		}
	}
	return out
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case nil:
		return "null"
	case bool:
		return "a boolean"
	default:
		return "a number"
	}
}
