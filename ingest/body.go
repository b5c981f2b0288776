package ingest

import (
	"bufio"
	"bytes"
	"context"
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

// Memory a decompressor holds besides its window, charged to the decode
// budget before it starts: flate's state is ~43 KiB; a zstd decoder in
// low-memory mode holds the window plus one block (128 KiB) of history and
// up to a few blocks of literals and sequences.
const (
	flateOverhead = 64 << 10
	zstdOverhead  = 512 << 10
	// zstdMinWindow is the least window a zstd body is allowed (and
	// charged): later frames of the body may use up to it.
	zstdMinWindow = 1 << 20
	// firstChunk is the body buffer's first size when the body's size is
	// not known in advance.
	firstChunk = 64 << 10
)

// readBody returns the request body decompressed, refusing more than limit
// bytes before or after decompression (a small gzip can expand
// enormously). Every byte it holds — the decompressor's state and window,
// and each body buffer it grows — is charged to c first, so concurrent
// requests together never hold more than the decode budget.
func readBody(ctx context.Context, r *http.Request, limit int64, c *charge) ([]byte, error) {
	var src io.Reader = http.MaxBytesReader(nil, r.Body, limit)
	size := int64(-1) // the decompressed size, when known in advance
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		size = r.ContentLength
		ahead := int64(firstChunk)
		if size >= 0 && size <= limit {
			ahead = (size + 1) + decodeFactor*size
		}
		if err := c.reserve(ctx, 0, ahead); err != nil {
			return nil, err
		}
	case "gzip", "x-gzip":
		if err := c.reserve(ctx, flateOverhead, firstChunk); err != nil {
			return nil, err
		}
		zr, err := gzip.NewReader(src)
		if err != nil {
			return nil, classifyReadErr(err)
		}
		defer zr.Close()
		src = zr
	case "zstd":
		// The frame header says how large a window the decoder will
		// allocate: charge it first, and hold every frame of the body to
		// it, so a frame cannot declare a larger one after the charge.
		br := bufio.NewReaderSize(src, 4096)
		window := min(uint64(zstdMinWindow), uint64(limit))
		var h zstd.Header
		if hdr, _ := br.Peek(zstd.HeaderMaxSize); h.Decode(hdr) == nil && !h.Skippable {
			w := h.WindowSize
			if h.SingleSegment || w == 0 {
				w = h.FrameContentSize
			}
			if h.HasFCS && h.FrameContentSize <= uint64(limit) {
				size = int64(h.FrameContentSize)
			}
			window = max(window, w)
		}
		if window > uint64(limit) {
			return nil, fmt.Errorf("%w: the zstd frame needs a %d-byte window, more than the %d bytes a body may have after decompression", errTooLarge, window, limit)
		}
		ahead := int64(firstChunk)
		if size >= 0 {
			ahead = (size + 1) + decodeFactor*size
		}
		if err := c.reserve(ctx, int64(window)+zstdOverhead, ahead); err != nil {
			return nil, err
		}
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxMemory(window), zstd.WithDecoderLowmem(true), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBadCompression, err)
		}
		defer zr.Close()
		src = zr
	default:
		return nil, fmt.Errorf("%w %q (use gzip, zstd or none)", errUnsupportedCode, enc)
	}
	// Like io.ReadAll, but every buffer is charged before it is made.
	// One byte more than expected tells the end without another buffer.
	next := int64(firstChunk)
	if size >= 0 {
		next = size + 1
	}
	var body []byte
	for {
		if len(body) == cap(body) {
			if int64(len(body)) > limit {
				return nil, fmt.Errorf("%w: more than %d bytes after decompression", errTooLarge, limit)
			}
			n := min(max(next, 512), limit+1)
			next = 2 * n
			if err := c.take(ctx, n); err != nil {
				return nil, err
			}
			nb := make([]byte, len(body), n)
			copy(nb, body)
			body = nb
		}
		n, err := src.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, classifyReadErr(err)
		}
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
// in a stream of values a bad line is only that record's problem when the
// record boundaries around it are certain (splitStream).
func splitRecords(body []byte) ([][]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: empty body", errMalformed)
	}
	if trimmed[0] != '[' {
		// A stream of JSON values: NDJSON, or (pretty-printed) objects.
		return splitStream(body)
	}
	// jsontext splits the array without decoding each record; duplicate
	// names and bad UTF-8 inside a record are left for the record decoder
	// to reject that record alone.
	dec := jsontext.NewDecoder(bytes.NewBuffer(trimmed), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
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

// splitStream splits a whitespace-separated stream of JSON values (NDJSON,
// or pretty-printed objects one after another) into records, one per
// value, so that result i is always the request's record i.
//
// A malformed value becomes one record of its own — the rest of its line,
// which the record decoder then rejects with the JSON error — and the
// values before and after it are kept, but only while the boundaries are
// certain: the error is on the line the bad value starts on, or every
// value so far was a line of its own (NDJSON, where a truncated line is
// its own record). What follows a bad line must be objects: a bare string
// or number there is the remains of a broken multi-line object, whose
// records can no longer be counted. Otherwise the whole body fails with
// the first bad line named, and nothing is stored.
func splitStream(body []byte) ([][]byte, error) {
	var out [][]byte
	pos := 0        // start of the part of body not split yet
	oneLine := true // every value so far was on a line of its own
	firstBad := -1  // where the first malformed value starts, once there was one
	var firstErr error
	firstErrAt := 0
	for {
		rest := body[pos:]
		dec := jsontext.NewDecoder(bytes.NewBuffer(rest), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
		end := 0 // end of the last value read, in rest
		var err error
		for {
			var v jsontext.Value
			v, err = dec.ReadValue()
			if err != nil {
				break
			}
			val := inPlace(rest, dec, v)
			if firstBad >= 0 && val[0] != '{' {
				return nil, badLine(body, firstBad, firstErrAt, firstErr)
			}
			if bytes.IndexByte(val, '\n') >= 0 {
				oneLine = false
			}
			out = append(out, val)
			end = int(dec.InputOffset())
		}
		if err == io.EOF {
			return out, nil
		}
		// The bad value starts at the first non-space after the last good one.
		start := pos + end + (len(rest[end:]) - len(bytes.TrimLeft(rest[end:], " \t\r\n")))
		errAt := pos + int(dec.InputOffset())
		var se *jsontext.SyntacticError
		if errors.As(err, &se) {
			errAt = pos + int(se.ByteOffset)
		}
		if firstBad < 0 {
			firstBad, firstErrAt, firstErr = start, errAt, err
		}
		lineEnd := len(body)
		if i := bytes.IndexByte(body[start:], '\n'); i >= 0 {
			lineEnd = start + i
		}
		sameLine := errAt <= lineEnd
		lineStart := start == 0 || body[start-1] == '\n' || len(bytes.TrimLeft(body[bytes.LastIndexByte(body[:start], '\n')+1:start], " \t\r")) == 0
		if !sameLine && !(oneLine && lineStart) {
			return nil, badLine(body, firstBad, firstErrAt, firstErr)
		}
		out = append(out, bytes.TrimSpace(body[start:lineEnd]))
		pos = lineEnd
		if pos >= len(body) {
			return out, nil
		}
	}
}

// badLine is the error for a body whose records cannot be told apart
// after the first malformed value, which starts at start and fails at
// errAt: it names the lines, so the sender can find it.
func badLine(body []byte, start, errAt int, err error) error {
	lineOf := func(off int) int { return bytes.Count(body[:min(off, len(body))], []byte("\n")) + 1 }
	where := fmt.Sprintf("line %d", lineOf(start))
	if l := lineOf(errAt); l != lineOf(start) {
		where += fmt.Sprintf(" (the error is on line %d)", l)
	}
	if errAt >= len(body) {
		where += " (it is unfinished at the end of the body)"
	}
	return fmt.Errorf("%w: the record starting on %s is not valid JSON: %v; the records after it cannot be told apart, so nothing was stored", errMalformed, where, err)
}
