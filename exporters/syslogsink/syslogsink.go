// Package syslogsink is the exporters' syslog sink: RFC 5424 messages over
// TLS with RFC 5425 octet-counting framing, the body in CEF or JSON, and
// the evidence pointer as structured data
// `[proofline@32473 origin="…" leaf="…" size="…" record_id="…"]`.
//
// What TCP syslog cannot do: it has no application acknowledgement. A batch
// counts as delivered once every byte of it was written to the TLS
// connection; the receiver may still lose what was in flight if it crashes
// or the connection breaks right after. On a write error the connection is
// closed and the whole batch is sent again on a new one (so a receiver can
// see duplicates, never gaps in what was reported as written).
package syslogsink

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/encode"
)

// Config configures the sink.
type Config struct {
	// Addr is the receiver, host:port.
	Addr string
	// TLS is the client TLS configuration (nil: system roots, ServerName from Addr).
	TLS *tls.Config
	// Format of the message body: "cef" (default) or "json".
	Format string
	// AppName, Hostname are RFC 5424 header fields (defaults: proofline, the host name).
	AppName, Hostname string
	// Facility is the syslog facility (default 13, log audit).
	Facility int
	// Version goes into the CEF header.
	Version string
	// DialTimeout and WriteTimeout bound a connection attempt and a batch write (default 10s, 30s).
	DialTimeout, WriteTimeout time.Duration
}

// Validate reports every problem of c.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("syslog: addr %q: want host:port", c.Addr))
	}
	switch c.Format {
	case "", "cef", "json":
	default:
		errs = append(errs, fmt.Errorf("syslog: format %q: cef or json", c.Format))
	}
	if c.Facility < 0 || c.Facility > 23 {
		errs = append(errs, fmt.Errorf("syslog: facility %d: 0..23", c.Facility))
	}
	return errors.Join(errs...)
}

// Sink writes to one syslog receiver over TLS.
type Sink struct {
	cfg  Config
	conn *tls.Conn
}

// New makes a sink; it connects on the first Send.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Format == "" {
		cfg.Format = "cef"
	}
	if cfg.AppName == "" {
		cfg.AppName = "proofline"
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.Facility == 0 {
		cfg.Facility = 13
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.TLS == nil {
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &Sink{cfg: cfg}, nil
}

// sdValue escapes an RFC 5424 PARAM-VALUE: '"', '\' and ']'.
func sdValue(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(s)
}

// header field: printable US-ASCII without spaces, or NILVALUE.
func field(s string, max int) string {
	var b strings.Builder
	for _, r := range s {
		if r > 32 && r < 127 {
			b.WriteRune(r)
		}
		if b.Len() == max {
			break
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// message is one framed RFC 5424 message: "LEN SP MSG".
func (s *Sink) message(sev int, ts time.Time, msgid, sd, body string) []byte {
	msg := fmt.Sprintf("<%d>1 %s %s %s - %s %s %s", s.cfg.Facility*8+sev, ts.UTC().Format("2006-01-02T15:04:05.000000Z"),
		field(s.cfg.Hostname, 255), field(s.cfg.AppName, 48), msgid, sd, body)
	return []byte(strconv.Itoa(len(msg)) + " " + msg)
}

func (s *Sink) encode(b exporters.Batch) ([]byte, map[int]string) {
	var buf bytes.Buffer
	rejected := map[int]string{}
	if a := b.Anchor; a != nil {
		sd := fmt.Sprintf(`[proofline@32473 origin="%s" size="%d"]`, sdValue(a.Origin), a.TreeSize)
		body := encode.CEFAnchor(a, s.cfg.Version)
		if s.cfg.Format == "json" {
			j, _ := exporters.EncodeNativeAnchor(a)
			body = string(j)
		}
		buf.Write(s.message(6, time.Now(), "checkpoint", sd, body))
	}
	for i, e := range b.Events {
		r, err := encode.Record(e)
		if err != nil {
			rejected[i] = err.Error()
			continue
		}
		var body string
		if s.cfg.Format == "json" {
			j, err := exporters.EncodeNative(e)
			if err != nil {
				rejected[i] = err.Error()
				continue
			}
			body = string(j)
		} else if body, err = encode.CEF(e, s.cfg.Version); err != nil {
			rejected[i] = err.Error()
			continue
		}
		ev := e.Evidence
		sd := fmt.Sprintf(`[proofline@32473 origin="%s" leaf="%d" size="%d" record_id="%s"]`, sdValue(ev.Origin), ev.LeafIndex, ev.TreeSize, sdValue(ev.RecordID))
		buf.Write(s.message(encode.Severity(r), r.TSStart.Time, "call", sd, body))
	}
	return buf.Bytes(), rejected
}

// Send writes the batch; see the package comment for what "delivered"
// means over TCP syslog.
func (s *Sink) Send(ctx context.Context, b exporters.Batch) error {
	data, rejected := s.encode(b)
	if len(data) > 0 {
		if err := s.write(ctx, data); err != nil {
			return err
		}
	}
	if len(rejected) > 0 {
		return &exporters.RejectedError{Reasons: rejected}
	}
	return nil
}

func (s *Sink) write(ctx context.Context, data []byte) error {
	if s.conn == nil {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: s.cfg.DialTimeout}, Config: s.cfg.TLS}
		c, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
		if err != nil {
			var cv *tls.CertificateVerificationError
			if errors.As(err, &cv) {
				return exporters.Fatal(fmt.Errorf("syslog %s: %w", s.cfg.Addr, err))
			}
			return fmt.Errorf("syslog %s: %w", s.cfg.Addr, err)
		}
		s.conn = c.(*tls.Conn)
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
	if _, err := s.conn.Write(data); err != nil {
		s.conn.Close()
		s.conn = nil
		return fmt.Errorf("syslog %s: %w", s.cfg.Addr, err)
	}
	return nil
}

// Close closes the connection.
func (s *Sink) Close(context.Context) error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
