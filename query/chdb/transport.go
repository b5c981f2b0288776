package chdb

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
)

// Transport answers ClickHouse's HTTP interface from the embedded engine.
//
// Why hand-written: clickhouse-go/v2 speaks ClickHouse's native TCP or HTTP
// protocol; libchdb exposes a C function call. This shim is the smallest
// adapter between them, so that proofline has one span-store code path —
// clickhouse-go — whether it talks to a ClickHouse cluster or to the
// engine in-process. Use it as clickhouse.Options{Protocol: clickhouse.HTTP,
// TransportFunc: ...} with compression off.
func (e *Engine) Transport() http.RoundTripper { return &transport{e: e} }

type transport struct{ e *Engine }

// interfaceParams are parameters of the HTTP interface itself, not engine
// settings: they are consumed here. chDB rejects e.g. client_protocol_version
// as a setting.
var interfaceParams = map[string]bool{
	"query": true, "default_format": true, "client_protocol_version": true, "database": true,
	"query_id": true, "quota_key": true, "session_id": true, "session_timeout": true,
	"wait_end_of_query": true, "buffer_size": true, "user": true, "password": true,
}

var codeRE = regexp.MustCompile(`Code: (\d+)\.`)

var formatClauseRE = regexp.MustCompile(`(?is)^(\s*INSERT\s.*?)\s+FORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$`)

// fromInfile turns "INSERT INTO t (a, b) FORMAT Native" into
// "INSERT INTO t (a, b) FROM INFILE 'path' FORMAT Native".
func fromInfile(query, path string) (string, error) {
	m := formatClauseRE.FindStringSubmatch(query)
	if m == nil {
		return "", fmt.Errorf("a request body is only accepted with INSERT ... FORMAT <format> (got %.100q)", query)
	}
	return m[1] + " FROM INFILE " + quoteString(path) + " FORMAT " + m[2], nil
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("chdb transport: read request: %w", err)
		}
		body = b
	}
	q := req.URL.Query()
	if enc := req.Header.Get("Content-Encoding"); enc != "" && enc != "identity" {
		return exception(req, 36, "request Content-Encoding "+enc+" is not supported by the embedded engine; use clickhouse-go with compression off"), nil
	}
	params, settings := map[string]string{}, map[string]string{}
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch {
		case strings.HasPrefix(k, "param_"):
			params[strings.TrimPrefix(k, "param_")] = v
		case interfaceParams[k]:
		case k == "compress" || k == "decompress":
			if v != "0" {
				return exception(req, 36, "compressed transfer is not supported by the embedded engine; use clickhouse-go with compression off"), nil
			}
		default:
			settings[k] = v
		}
	}
	if db := q.Get("database"); db != "" && db != "default" {
		return exception(req, 81, "only the default database is served by the embedded engine"), nil
	}
	text := body
	if qp := q.Get("query"); qp != "" && len(body) > 0 {
		// INSERT ... FORMAT X in the URL, its data in the body. libchdb
		// reads only about 20 KiB of data inline after a statement (found
		// by test: larger Native blocks fail with CANNOT_READ_ALL_DATA), so
		// the data goes through a private file and FROM INFILE instead.
		path, cleanup, err := t.e.spool(body)
		if err != nil {
			return exception(req, 1000, err.Error()), nil
		}
		defer cleanup()
		rewritten, err := fromInfile(qp, path)
		if err != nil {
			return exception(req, 62, err.Error()), nil
		}
		text = []byte(rewritten)
	} else if qp != "" {
		text = []byte(qp)
	}
	format := q.Get("default_format")
	if format == "" {
		format = "TabSeparated"
	}
	out, err := t.e.Query(req.Context(), Statement{Text: text, Format: format, Params: params, Settings: settings})
	if err != nil {
		msg := err.Error()
		if qe, ok := err.(*QueryError); ok {
			msg = qe.Message
		}
		code := 1000
		if m := codeRE.FindStringSubmatch(msg); m != nil {
			fmt.Sscan(m[1], &code)
		} else {
			msg = fmt.Sprintf("Code: %d. DB::Exception: %s", code, msg)
		}
		return exception(req, code, msg), nil
	}
	if format == "Native" {
		if out, err = reframeNative(out, parseRevision(q.Get("client_protocol_version"))); err != nil {
			return exception(req, 1000, err.Error()), nil
		}
	}
	h := http.Header{}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-ClickHouse-Format", format)
	if id := q.Get("query_id"); id != "" {
		h.Set("X-ClickHouse-Query-Id", id)
	}
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(out)), ContentLength: int64(len(out)), Request: req,
	}, nil
}

// exception is an error answer as a ClickHouse server gives it.
func exception(req *http.Request, code int, msg string) *http.Response {
	if !strings.HasPrefix(msg, "Code:") {
		msg = fmt.Sprintf("Code: %d. DB::Exception: %s", code, msg)
	}
	h := http.Header{}
	h.Set("Content-Type", "text/plain; charset=UTF-8")
	h.Set("X-ClickHouse-Exception-Code", fmt.Sprint(code))
	b := []byte(msg + "\n")
	return &http.Response{
		StatusCode: http.StatusInternalServerError, Status: "500 Internal Server Error", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(b)), ContentLength: int64(len(b)), Request: req,
	}
}
