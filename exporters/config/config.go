// Package config reads the exporters file (`--exporters FILE`): which sinks
// exist, what each receives, and where they may send. Every problem is
// reported at start, each with its line in the file, before anything is
// delivered.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/ecssink"
	"github.com/proofline/proofline/exporters/encode"
	"github.com/proofline/proofline/exporters/filesink"
	"github.com/proofline/proofline/exporters/filter"
	"github.com/proofline/proofline/exporters/metricsink"
	"github.com/proofline/proofline/exporters/splunkhec"
	"github.com/proofline/proofline/exporters/syslogsink"
)

// File is the exporters file.
type File struct {
	// StateDir holds cursors, statuses and dead letters (default: the data
	// directory's exporters/).
	StateDir string `yaml:"state_dir"`
	// EgressAllow lists the hosts network sinks may send to ("*.example.com"
	// matches subdomains). A network sink whose host is not listed fails
	// start; so does one without TLS to a host other than loopback.
	EgressAllow []string `yaml:"egress_allow"`
	Sinks       []Sink   `yaml:"sinks"`

	// Version is the proofline version, for encodings that carry it.
	Version string `yaml:"-"`
	// Registerer receives the metrics of prometheus sinks.
	Registerer prometheus.Registerer `yaml:"-"`

	path string
}

// Sink is one sink's configuration.
type Sink struct {
	Name        string   `yaml:"name"`
	Type        string   `yaml:"type"` // file | splunk_hec | syslog | elasticsearch
	Regions     []string `yaml:"regions"`
	DataClasses []string `yaml:"data_classes"`
	// Filter is a CEL expression over `record` (the call record) that
	// must also hold for the sink to receive it (exporters/filter).
	Filter    string `yaml:"filter"`
	BatchSize int    `yaml:"batch_size"`

	File      *FileSink   `yaml:"file"`
	SplunkHEC *HECSink    `yaml:"splunk_hec"`
	Syslog    *SyslogSink `yaml:"syslog"`
	Prom      *PromSink   `yaml:"prometheus"`
	Elastic   *ESSink     `yaml:"elasticsearch"`

	line, filterLine int
	filter           *filter.Filter
}

// FileSink configures a file sink.
type FileSink struct {
	Dir         string        `yaml:"dir"`
	Encoding    string        `yaml:"encoding"` // native (default) or ocsf
	Prefix      string        `yaml:"prefix"`
	MaxBytes    int64         `yaml:"max_bytes"`
	MaxAge      time.Duration `yaml:"max_age"`
	RetainAge   time.Duration `yaml:"retain_age"`
	RetainBytes int64         `yaml:"retain_bytes"`
}

// HECSink configures a Splunk HEC sink.
type HECSink struct {
	URL        string        `yaml:"url"`
	TokenFile  string        `yaml:"token_file"`
	Index      string        `yaml:"index"`
	Source     string        `yaml:"source"`
	Sourcetype string        `yaml:"sourcetype"`
	Host       string        `yaml:"host"`
	Ack        bool          `yaml:"ack"`
	AckTimeout time.Duration `yaml:"ack_timeout"`
	CAFile     string        `yaml:"ca_file"`
}

// ESSink configures an Elasticsearch `_bulk` sink (ECS documents).
// Credentials: api_key_file (the encoded API key) or username +
// password_file.
type ESSink struct {
	URL             string `yaml:"url"`
	Index           string `yaml:"index"`
	CheckpointIndex string `yaml:"checkpoint_index"`
	APIKeyFile      string `yaml:"api_key_file"`
	Username        string `yaml:"username"`
	PasswordFile    string `yaml:"password_file"`
	CAFile          string `yaml:"ca_file"`
}

// SyslogSink configures RFC 5424 syslog over TLS (RFC 5425 framing).
type SyslogSink struct {
	Addr       string `yaml:"addr"`
	Format     string `yaml:"format"` // cef (default) or json
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
	AppName    string `yaml:"app_name"`
	Facility   int    `yaml:"facility"`
}

// PromSink configures per-tool Prometheus metrics from the log.
type PromSink struct {
	// SLOFile is an SLO file in serve's --slo format (slos: [{group,
	// target, latency_ms}]).
	SLOFile  string `yaml:"slo_file"`
	MaxTools int    `yaml:"max_tools"`
}

// Load reads and validates the file at p.
func Load(p string) (*File, error) {
	raw, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("exporters file: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	f.path = p
	// Remember where each sink starts, for errors.
	if len(root.Content) == 1 {
		doc := root.Content[0]
		for i := 0; i+1 < len(doc.Content); i += 2 {
			if doc.Content[i].Value == "sinks" {
				for j, n := range doc.Content[i+1].Content {
					if j < len(f.Sinks) {
						f.Sinks[j].line, f.Sinks[j].filterLine = n.Line, n.Line
						for k := 0; k+1 < len(n.Content); k += 2 {
							if n.Content[k].Value == "filter" {
								f.Sinks[j].filterLine = n.Content[k].Line
							}
						}
					}
				}
			}
		}
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Validate reports every problem, each with the line of its sink.
func (f *File) Validate() error {
	var errs []error
	at := func(s *Sink, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s:%d: sink %q: %s", f.path, s.line, s.Name, fmt.Sprintf(format, args...)))
	}
	if len(f.Sinks) == 0 {
		errs = append(errs, fmt.Errorf("%s: no sinks", f.path))
	}
	names := map[string]bool{}
	for i := range f.Sinks {
		s := &f.Sinks[i]
		if s.Name == "" {
			at(s, "name is required")
		} else if names[s.Name] {
			at(s, "a second sink has this name")
		}
		names[s.Name] = true
		if s.Filter != "" {
			var err error
			if s.filter, err = filter.Compile(s.Filter); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: sink %q: filter: %w", f.path, s.filterLine, s.Name, err))
			}
		}
		if s.BatchSize < 0 || s.BatchSize > 10000 {
			at(s, "batch_size %d: 1..10000", s.BatchSize)
		}
		switch s.Type {
		case "file":
			if s.File == nil || s.File.Dir == "" {
				at(s, "type file needs file.dir")
			} else if e := s.File.Encoding; e != "" && e != "native" && e != "ocsf" {
				at(s, "file.encoding %q: native or ocsf", e)
			}
		case "splunk_hec":
			h := s.SplunkHEC
			if h == nil {
				at(s, "type splunk_hec needs a splunk_hec section")
				continue
			}
			if h.TokenFile == "" {
				at(s, "splunk_hec.token_file is required (secrets come from files)")
			}
			if err := f.checkEgress(h.URL); err != nil {
				at(s, "%v", err)
			}
		case "syslog":
			sy := s.Syslog
			if sy == nil {
				at(s, "type syslog needs a syslog section")
				continue
			}
			if err := f.checkEgress("https://" + sy.Addr); err != nil {
				at(s, "syslog.addr: %v", err)
			}
			if sy.Format != "" && sy.Format != "cef" && sy.Format != "json" {
				at(s, "syslog.format %q: cef or json", sy.Format)
			}
			if (sy.CertFile == "") != (sy.KeyFile == "") {
				at(s, "syslog.cert_file and syslog.key_file go together")
			}
		case "prometheus":
			if s.Prom == nil {
				s.Prom = &PromSink{}
			}
			if len(s.Regions) > 0 || len(s.DataClasses) > 0 || s.Filter != "" {
				at(s, "a prometheus sink counts every call: regions, data_classes and filter do not apply")
			}
		case "elasticsearch":
			es := s.Elastic
			if es == nil {
				at(s, "type elasticsearch needs an elasticsearch section")
				continue
			}
			if (es.APIKeyFile == "") == (es.Username == "" && es.PasswordFile == "") {
				at(s, "elasticsearch: give api_key_file, or username and password_file (secrets come from files)")
			} else if (es.Username == "") != (es.PasswordFile == "") {
				at(s, "elasticsearch.username and elasticsearch.password_file go together")
			}
			if err := f.checkEgress(es.URL); err != nil {
				at(s, "%v", err)
			}
		case "":
			at(s, "type is required (file, splunk_hec, syslog, elasticsearch, prometheus)")
		default:
			at(s, "unknown type %q (file, splunk_hec, syslog, elasticsearch, prometheus)", s.Type)
		}
		if s.Type != "file" && s.File != nil || s.Type != "splunk_hec" && s.SplunkHEC != nil || s.Type != "syslog" && s.Syslog != nil ||
			s.Type != "elasticsearch" && s.Elastic != nil || s.Type != "prometheus" && s.Prom != nil {
			at(s, "has a section for another type than %q", s.Type)
		}
	}
	return errors.Join(errs...)
}

// checkEgress enforces the allow list and TLS outside loopback.
func (f *File) checkEgress(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("url %q: want https://host[:port]", raw)
	}
	host := u.Hostname()
	if u.Scheme != "https" && !isLoopback(host) {
		return fmt.Errorf("url %q: TLS (https) is required outside loopback", raw)
	}
	for _, pat := range f.EgressAllow {
		if ok, _ := path.Match(strings.ToLower(pat), strings.ToLower(host)); ok {
			return nil
		}
	}
	return fmt.Errorf("host %q is not on egress_allow", host)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Build makes the sinks. Secrets and CA files are read here, so a missing
// file fails start.
func (f *File) Build() ([]exporters.SinkSpec, error) {
	var specs []exporters.SinkSpec
	var errs []error
	for i := range f.Sinks {
		s := &f.Sinks[i]
		spec := exporters.SinkSpec{Name: s.Name, BatchSize: s.BatchSize,
			Route: exporters.Route{Regions: s.Regions, DataClasses: s.DataClasses}}
		if s.filter != nil {
			spec.Route.Filter = s.filter.Match
		}
		var err error
		switch s.Type {
		case "file":
			fc := filesink.Config{Dir: s.File.Dir, Prefix: s.File.Prefix, MaxBytes: s.File.MaxBytes,
				MaxAge: s.File.MaxAge, RetainAge: s.File.RetainAge, RetainBytes: s.File.RetainBytes}
			if s.File.Encoding == "ocsf" {
				v := f.Version
				fc.Encode = func(e exporters.Event) ([]byte, error) { return encode.OCSFJSON(e, v) }
				fc.EncodeAnchor = func(a *exporters.Anchor) ([]byte, error) { return json.Marshal(encode.OCSFAnchor(a, v)) }
			}
			spec.Sink, err = filesink.New(fc)
		case "splunk_hec":
			spec.Sink, err = buildHEC(s.SplunkHEC)
		case "syslog":
			spec.Sink, err = buildSyslog(s.Syslog, f.Version)
		case "prometheus":
			spec.Sink, err = f.buildProm(s.Prom)
			spec.FromEnd = true
		case "elasticsearch":
			spec.Sink, err = buildES(s.Elastic, f.Version)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: sink %q: %w", f.path, s.line, s.Name, err))
			continue
		}
		specs = append(specs, spec)
	}
	return specs, errors.Join(errs...)
}

func tlsConfig(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates", caFile)
		}
		c.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

func buildSyslog(sy *SyslogSink, version string) (exporters.Sink, error) {
	tc, err := tlsConfig(sy.CAFile, sy.CertFile, sy.KeyFile, sy.ServerName)
	if err != nil {
		return nil, err
	}
	return syslogsink.New(syslogsink.Config{Addr: sy.Addr, TLS: tc, Format: sy.Format, AppName: sy.AppName, Facility: sy.Facility, Version: version})
}

func (f *File) buildProm(p *PromSink) (exporters.Sink, error) {
	if f.Registerer == nil {
		return nil, errors.New("a prometheus sink needs --metrics-listen")
	}
	var slos []metricsink.SLO
	if p.SLOFile != "" {
		raw, err := os.ReadFile(p.SLOFile)
		if err != nil {
			return nil, fmt.Errorf("slo_file: %w", err)
		}
		// The --slo format (query/spanstore.SLOFile); read here so the
		// exporters do not depend on the span store.
		var sf struct {
			SLOs []struct {
				Group     string  `yaml:"group"`
				Target    float64 `yaml:"target"`
				LatencyMs float64 `yaml:"latency_ms"`
			} `yaml:"slos"`
		}
		if err := yaml.Unmarshal(raw, &sf); err != nil {
			return nil, fmt.Errorf("slo_file %s: %w", p.SLOFile, err)
		}
		for _, s := range sf.SLOs {
			slos = append(slos, metricsink.SLO{Group: s.Group, Target: s.Target, LatencyMs: s.LatencyMs})
		}
	}
	return metricsink.New(metricsink.Config{Registerer: f.Registerer, SLOs: slos, MaxTools: p.MaxTools})
}

func buildHEC(h *HECSink) (exporters.Sink, error) {
	tok, err := os.ReadFile(h.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("token_file: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // egress goes only where configured, never through an environment proxy
	tc, err := tlsConfig(h.CAFile, "", "", "")
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig = tc
	return splunkhec.New(splunkhec.Config{URL: h.URL, Token: strings.TrimSpace(string(tok)), Index: h.Index, Source: h.Source,
		Sourcetype: h.Sourcetype, Host: h.Host, Ack: h.Ack, AckTimeout: h.AckTimeout,
		Client: &http.Client{Transport: tr, Timeout: 30 * time.Second}})
}

func buildES(es *ESSink, version string) (exporters.Sink, error) {
	cfg := ecssink.Config{URL: es.URL, Index: es.Index, CheckpointIndex: es.CheckpointIndex, Username: es.Username, Version: version}
	if es.APIKeyFile != "" {
		k, err := os.ReadFile(es.APIKeyFile)
		if err != nil {
			return nil, fmt.Errorf("api_key_file: %w", err)
		}
		cfg.APIKey = strings.TrimSpace(string(k))
	} else {
		p, err := os.ReadFile(es.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("password_file: %w", err)
		}
		cfg.Password = strings.TrimRight(string(p), "\r\n")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // egress goes only where configured, never through an environment proxy
	tc, err := tlsConfig(es.CAFile, "", "", "")
	if err != nil {
		return nil, err
	}
	tr.TLSClientConfig = tc
	cfg.Client = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	return ecssink.New(cfg)
}
