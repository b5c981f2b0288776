package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

var (
	errTooLarge        = errors.New("request body too large")
	errUnsupportedCode = errors.New("unsupported Content-Encoding")
	errBadCompression  = errors.New("body does not decompress")
	errMalformed       = errors.New("malformed request body")
)

// readBody returns the request body decompressed, refusing more than limit
// bytes before or after decompression (a small gzip can expand enormously).
func readBody(r *http.Request, limit int64) ([]byte, error) {
	var src io.Reader = http.MaxBytesReader(nil, r.Body, limit)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, classifyReadErr(err)
		}
		defer zr.Close()
		src = zr
	case "zstd":
		zr, err := zstd.NewReader(src, zstd.WithDecoderMaxMemory(uint64(limit)*2), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBadCompression, err)
		}
		defer zr.Close()
		src = zr
	default:
		return nil, fmt.Errorf("%w %q (use gzip, zstd or none)", errUnsupportedCode, enc)
	}
	body, err := io.ReadAll(io.LimitReader(src, limit+1))
	if err != nil {
		return nil, classifyReadErr(err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes after decompression", errTooLarge, limit)
	}
	return body, nil
}

func classifyReadErr(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Errorf("%w: more than %d bytes", errTooLarge, mbe.Limit)
	}
	return fmt.Errorf("%w: %v", errBadCompression, err)
}

// splitValues splits a whitespace-separated stream of JSON values.
func splitValues(body []byte) ([][]byte, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	var out [][]byte
	for {
		v, err := dec.ReadValue()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, inPlace(body, dec, v))
	}
}

// inPlace is the value v just read by dec, as a slice of the body dec
// reads: ReadValue's own slice is only valid until the next read, and a
// copy of every record was a tenth of ingest's allocations.
func inPlace(body []byte, dec *jsontext.Decoder, v jsontext.Value) []byte {
	end := int(dec.InputOffset())
	return body[end-len(v) : end : end]
}

// splitRecords splits a body holding a JSON array of records, or NDJSON
// (one record per line), into the raw bytes of each record. A syntax error
// in an array fails the whole body, since nothing after it can be trusted;
// in NDJSON each line stands alone and a bad line is only that record's
// problem, reported by the record decoder.
func splitRecords(body []byte) ([][]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: empty body", errMalformed)
	}
	if trimmed[0] != '[' {
		// A stream of JSON values: NDJSON, or one (pretty-printed) object.
		if vals, err := splitValues(trimmed); err == nil {
			return vals, nil
		}
		// Some value is malformed: fall back to lines, so that in NDJSON
		// only the bad line is rejected and its neighbours are kept.
		var out [][]byte
		for line := range bytes.Lines(trimmed) {
			if l := bytes.TrimSpace(line); len(l) > 0 {
				out = append(out, l)
			}
		}
		return out, nil
	}
	// jsontext splits the array without decoding each record; duplicate
	// names and bad UTF-8 inside a record are left for the record decoder
	// to reject that record alone.
	dec := jsontext.NewDecoder(bytes.NewReader(trimmed), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if _, err := dec.ReadToken(); err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	var out [][]byte
	for dec.PeekKind() != ']' {
		v, err := dec.ReadValue()
		if err != nil {
			return nil, fmt.Errorf("%w: record %d: %v", errMalformed, len(out), err)
		}
		out = append(out, inPlace(trimmed, dec, v))
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformed, err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the closing ]", errMalformed)
	}
	return out, nil
}
