package config_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proofline/proofline/exporters"
	"github.com/proofline/proofline/exporters/config"
	"github.com/proofline/proofline/exporters/ecssink"
	"github.com/proofline/proofline/exporters/ecssink/estest"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "exporters.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadReportsEveryErrorWithItsLine(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string // substrings, all must appear
	}{
		{"unknown field", "sinks:\n  - name: a\n    type: file\n    fille: {dir: /x}\n", []string{"line 4", "fille"}},
		{"several at once", `egress_allow: [hec.example.com]
sinks:
  - name: lake
    type: file
  - name: vendor
    type: splunk_hec
    splunk_hec: {url: "http://hec.example.com:8088", token_file: /t}
  - name: other
    type: splunk_hec
    splunk_hec: {url: "https://evil.example.net", token_file: /t}
  - name: lake
    type: kafka
`, []string{
			`:3: sink "lake": type file needs file.dir`,
			`:5: sink "vendor": url "http://hec.example.com:8088": TLS (https) is required outside loopback`,
			`:8: sink "other": host "evil.example.net" is not on egress_allow`,
			`:11: sink "lake": a second sink has this name`,
			`:11: sink "lake": unknown type "kafka"`,
		}},
		{"syslog", "egress_allow: [siem.example.com]\nsinks:\n  - name: qradar\n    type: syslog\n    syslog: {addr: \"other.example.com:6514\", format: leef, cert_file: /c}\n",
			[]string{`:3: sink "qradar": syslog.addr: host "other.example.com" is not on egress_allow`, `syslog.format "leef"`, `cert_file and syslog.key_file go together`}},
		{"elasticsearch", "egress_allow: [es.example.com]\nsinks:\n  - name: elastic\n    type: elasticsearch\n    elasticsearch: {url: \"https://other.example.com:9200\", api_key_file: /k, username: u}\n  - name: elastic2\n    type: elasticsearch\n    elasticsearch: {url: \"http://es.example.com:9200\", username: u}\n",
			[]string{`:3: sink "elastic": host "other.example.com" is not on egress_allow`, `:3: sink "elastic": elasticsearch: give api_key_file, or username and password_file`,
				`:6: sink "elastic2": elasticsearch.username and elasticsearch.password_file go together`, `:6: sink "elastic2": url "http://es.example.com:9200": TLS (https) is required outside loopback`}},
		{"filters", "sinks:\n  - name: a\n    type: file\n    file: {dir: /x}\n    filter: 'record.tool.name'\n  - name: b\n    type: file\n    file: {dir: /y}\n    filter: 'record.outcome.status =='\n  - name: m\n    type: prometheus\n    filter: 'true'\n",
			[]string{`:5: sink "a": filter: the filter is a dyn, it must be a bool`, `:9: sink "b": filter: ERROR: <input>:1:25: Syntax error`,
				`:10: sink "m": a prometheus sink counts every call: regions, data_classes and filter do not apply`}},
		{"no token file", "egress_allow: [127.0.0.1]\nsinks:\n  - name: s\n    type: splunk_hec\n    splunk_hec: {url: \"http://127.0.0.1:8088\"}\n",
			[]string{`:3: sink "s": splunk_hec.token_file is required`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(write(t, tc.body))
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadAndBuildAValidFile(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "hec.token")
	os.WriteFile(tok, []byte("abc\n"), 0o600)
	p := write(t, `egress_allow: ["*.splunkcloud.com", 127.0.0.1]
sinks:
  - name: lake
    type: file
    regions: [eu]
    filter: 'record.outcome.status != "ok"'
    file: {dir: `+filepath.Join(dir, "lake")+`, max_bytes: 1048576, max_age: 10m, retain_age: 720h}
  - name: splunk
    type: splunk_hec
    data_classes: [internal]
    splunk_hec: {url: "https://acme.splunkcloud.com:8088", token_file: `+tok+`, index: proofline, ack: true}
`)
	f, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	specs, err := f.Build()
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 || specs[0].Route.Regions[0] != "eu" || specs[1].Route.DataClasses[0] != "internal" || specs[1].Route.Filter != nil {
		t.Fatalf("specs: %+v", specs)
	}
	for rec, want := range map[string]bool{`{"outcome":{"status":"error"}}`: true, `{"outcome":{"status":"ok"}}`: false} {
		if got, err := specs[0].Route.Filter([]byte(rec)); err != nil || got != want {
			t.Fatalf("the lake's filter on %s: %v %v, want %v", rec, got, err, want)
		}
	}
}

// An elasticsearch sink built from the file reads its API key from
// api_key_file and delivers to the cluster it names.
func TestBuildAnElasticsearchSinkFromTheFile(t *testing.T) {
	key := estest.EncodeAPIKey("proofline", "k3y")
	es := estest.New(estest.Options{APIKey: key})
	defer es.Close()
	dir := t.TempDir()
	kf := filepath.Join(dir, "es.apikey")
	os.WriteFile(kf, []byte(key+"\n"), 0o600)
	f, err := config.Load(write(t, "egress_allow: [127.0.0.1]\nsinks:\n  - name: elastic\n    type: elasticsearch\n"+
		"    elasticsearch: {url: \""+es.URL+"\", index: proofline-calls, api_key_file: "+kf+"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := f.Build()
	if err != nil {
		t.Fatal(err)
	}
	ev := exporters.Event{Evidence: exporters.Evidence{Origin: "o", LeafIndex: 3, TreeSize: 4, RecordID: "r"},
		Record: []byte(`{"record_id":"r","ts_start":"2026-12-01T10:00:00Z","ts_end":"2026-12-01T10:00:01Z","actor":{"id":"a","type":"agent"},"tool":{"name":"t"},"policy":{"decision":"allow"},"outcome":{"status":"ok"}}`)}
	if err := specs[0].Sink.Send(context.Background(), exporters.Batch{Events: []exporters.Event{ev}}); err != nil {
		t.Fatal(err)
	}
	if es.Docs("proofline-calls")["o:3"] == nil || len(es.Docs(ecssink.DefaultCheckpointIndex)) != 0 {
		t.Fatalf("documents: %v", es.Docs("proofline-calls"))
	}
	os.Remove(kf)
	if _, err := f.Build(); err == nil || !strings.Contains(err.Error(), "api_key_file") {
		t.Fatalf("a missing api_key_file built: %v", err)
	}
}
