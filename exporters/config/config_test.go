package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/proofline/proofline/exporters/config"
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
	if len(specs) != 2 || specs[0].Route.Regions[0] != "eu" || specs[1].Route.DataClasses[0] != "internal" {
		t.Fatalf("specs: %+v", specs)
	}
}
