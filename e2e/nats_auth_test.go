package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/internal/testpki"
	"github.com/proofline/proofline/schemas"
)

// TestExternalNATSAuth runs proofline against nats-server processes that
// authenticate their clients the ways production clusters do: operator
// mode (a JWT user in a creds file) over mutual TLS, an nkey user over TLS,
// and a token. Each must carry records into the log; each must refuse a
// proofline holding the wrong secret, and proofline must stop at start
// with the server's reason instead of retrying forever.
func TestExternalNATSAuth(t *testing.T) {
	pki := testpki.New(t)
	type refusal struct {
		why  string
		args func(t *testing.T, dir string) []string
		want string // what the error must say, in lower case
	}
	tests := []struct {
		name string
		// conf is the server's authorization and TLS configuration.
		conf func(t *testing.T, dir string) string
		// good is proofline's flags with the right secret; each of bad
		// must be refused.
		good func(t *testing.T, dir string) []string
		bad  []refusal
	}{{
		name: "operator JWT creds over mutual TLS",
		conf: func(t *testing.T, dir string) string {
			return newOperator(t, dir).conf + natsServerTLS(pki, true)
		},
		good: func(t *testing.T, dir string) []string {
			return append([]string{"--nats-creds", filepath.Join(dir, "user.creds")}, natsClientFlags(pki, true)...)
		},
		bad: []refusal{{
			why: "a user of an account the server does not know",
			args: func(t *testing.T, dir string) []string {
				stranger := newOperator(t, t.TempDir())
				return append([]string{"--nats-creds", stranger.creds}, natsClientFlags(pki, true)...)
			},
			want: "authorization violation",
		}, {
			// Proofline must not fall back to trusting a certificate it
			// cannot verify.
			why: "right creds, no CA for the server's certificate",
			args: func(t *testing.T, dir string) []string {
				return []string{"--nats-creds", filepath.Join(dir, "user.creds")}
			},
			want: "certificate",
		}},
	}, {
		name: "nkey user over TLS",
		conf: func(t *testing.T, dir string) string {
			kp, err := nkeys.CreateUser()
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := kp.PublicKey()
			seed, _ := kp.Seed()
			writeFile(t, filepath.Join(dir, "user.nk"), seed)
			// Only the permissions the README lists.
			perms := `permissions: { publish: ["proofline.calls.v1", "proofline.deadletter.>", "$JS.API.>", "$JS.ACK.CALLS.>"], subscribe: ["_INBOX.>"] }`
			return fmt.Sprintf("jetstream { store_dir: %q }\nauthorization { users = [ { nkey: %q, %s } ] }\n", filepath.Join(dir, "js"), pub, perms) + natsServerTLS(pki, false)
		},
		good: func(t *testing.T, dir string) []string {
			return []string{"--nats-nkey", filepath.Join(dir, "user.nk"), "--nats-ca", pki.CAFile}
		},
		bad: []refusal{{
			why: "another user's seed",
			args: func(t *testing.T, dir string) []string {
				other, _ := nkeys.CreateUser()
				seed, _ := other.Seed()
				p := filepath.Join(t.TempDir(), "other.nk")
				writeFile(t, p, seed)
				return []string{"--nats-nkey", p, "--nats-ca", pki.CAFile}
			},
			want: "authorization violation",
		}},
	}, {
		name: "token",
		conf: func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, "token"), []byte("s3cret-proofline-token\n"))
			return fmt.Sprintf("jetstream { store_dir: %q }\nauthorization { token: %q }\n", filepath.Join(dir, "js"), "s3cret-proofline-token")
		},
		good: func(t *testing.T, dir string) []string {
			return []string{"--nats-token-file", filepath.Join(dir, "token")}
		},
		bad: []refusal{{
			why: "a wrong token",
			args: func(t *testing.T, dir string) []string {
				p := filepath.Join(t.TempDir(), "token")
				writeFile(t, p, []byte("not-the-token"))
				return []string{"--nats-token-file", p}
			},
			want: "authorization violation",
		}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			n := startNATSConf(t, tc.conf(t, dir))

			// A wrong secret: serve stops at start and says why.
			for _, b := range tc.bad {
				code, logs := serveUntilExit(t, t.TempDir(), append([]string{"--nats", n.url()}, b.args(t, dir)...)...)
				if code == 0 || !strings.Contains(strings.ToLower(logs), b.want) || !strings.Contains(logs, "refused") {
					t.Fatalf("serve with %s: exit %d, want non-zero and a log saying the server refused it (%q):\n%s", b.why, code, b.want, logs)
				}
			}

			// The right one: records reach the log and verify offline.
			data := t.TempDir()
			s := startServer(t, data, append([]string{"--nats", n.url()}, tc.good(t, dir)...)...)
			tok := s.token("gw-1", "ingest", "1h")
			q := s.token("auditor", "query", "1h")
			list := ids("auth", 5)
			if code, _, pr, err := s.post(tok, jsonArray(t, records(list)...), nil); err != nil || code != 202 || pr.Accepted != len(list) {
				t.Fatalf("post: %d %+v %v\n%s", code, pr, err, s.logs())
			}
			bundle := filepath.Join(t.TempDir(), "b.json")
			writeFile(t, bundle, s.waitProof(q, list[3]))
			if out, errOut, code := cli(t, "verify", "--bundle", bundle, "--key", filepath.Join(data, "keys", "log.pub")); code != 0 {
				t.Fatalf("verify: %d %s%s", code, out, errOut)
			}
			// The server reports a denied publish (an ack, a dead letter)
			// asynchronously; after a graceful stop every ack was sent.
			s.stop()
			if logs := s.logs(); strings.Contains(strings.ToLower(logs), "permissions violation") {
				t.Fatalf("the server denied proofline something:\n%s", logs)
			}
		})
	}
}

// serveUntilExit runs proofline serve, which is expected to give up by
// itself, and returns its exit code and output.
func serveUntilExit(t *testing.T, data string, extra ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"serve", "--data", data, "--listen", freeAddr(t), "--origin", "e2e.proofline.test/log"}, extra...)
	out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("proofline serve still running after 60s with a server that refuses it:\n%s", out)
	}
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

// startNATSConf starts nats-server with conf (its listen address is
// added here).
func startNATSConf(t *testing.T, conf string) *natsProc {
	t.Helper()
	n := &natsProc{t: t, bin: natsServerBinary(t), store: t.TempDir(), addr: freeAddr(t)}
	n.conf = filepath.Join(t.TempDir(), "nats.conf")
	writeFile(t, n.conf, []byte(fmt.Sprintf("listen: %q\n%s", n.addr, conf)))
	n.start()
	t.Cleanup(func() { n.stop(syscall.SIGTERM) })
	return n
}

// operator is a NATS operator-mode set-up: an operator, a system account,
// an account with JetStream, and one user of it in a creds file.
type operator struct {
	conf  string // server configuration for this operator
	creds string // the user's creds file
}

func newOperator(t *testing.T, dir string) operator {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opPub, _ := okp.PublicKey()
	sys, err := nkeys.CreateAccount()
	must(err)
	sysPub, _ := sys.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "proofline-test"
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(okp)
	must(err)
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	sysJWT, err := sc.Encode(okp)
	must(err)

	akp, err := nkeys.CreateAccount()
	must(err)
	aPub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(aPub)
	ac.Name = "PROOFLINE"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	aJWT, err := ac.Encode(okp)
	must(err)

	ukp, err := nkeys.CreateUser()
	must(err)
	uPub, _ := ukp.PublicKey()
	uc := jwt.NewUserClaims(uPub)
	uc.Name = "proofline"
	uJWT, err := uc.Encode(akp)
	must(err)
	seed, _ := ukp.Seed()
	creds, err := jwt.FormatUserConfig(uJWT, seed)
	must(err)
	credsPath := filepath.Join(dir, "user.creds")
	writeFile(t, credsPath, creds)

	conf := fmt.Sprintf("jetstream { store_dir: %q }\noperator: %q\nsystem_account: %q\nresolver: MEMORY\nresolver_preload: { %s: %q, %s: %q }\n",
		filepath.Join(dir, "js"), opJWT, sysPub, sysPub, sysJWT, aPub, aJWT)
	return operator{conf: conf, creds: credsPath}
}

// natsServerTLS is a nats-server tls block; verify asks clients for a
// certificate signed by the CA.
func natsServerTLS(p testpki.PKI, verify bool) string {
	return fmt.Sprintf("tls { cert_file: %q, key_file: %q, ca_file: %q, verify: %t }\n", p.ServerCert, p.ServerKey, p.CAFile, verify)
}

// natsClientFlags are proofline's TLS flags for an external NATS; cert
// adds the client certificate.
func natsClientFlags(p testpki.PKI, cert bool) []string {
	f := []string{"--nats-ca", p.CAFile}
	if cert {
		f = append(f, "--nats-cert", p.ClientCert, "--nats-key", p.ClientKey)
	}
	return f
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestNATSListenTLS: the embedded NATS that --nats-listen exposes, given a
// certificate, speaks TLS only. A producer that trusts the CA publishes a
// record that reaches the log; one that cannot verify the certificate does
// not get to send its token at all.
func TestNATSListenTLS(t *testing.T) {
	pki := testpki.New(t)
	natsAddr := freeAddr(t)
	data := t.TempDir()
	s := startServer(t, data, "--nats-listen", natsAddr, "--nats-listen-cert", pki.ServerCert, "--nats-listen-key", pki.ServerKey)
	b, err := os.ReadFile(filepath.Join(data, "keys", "nats.token"))
	if err != nil {
		t.Fatal(err)
	}
	tok := nats.Token(strings.TrimSpace(string(b)))

	if nc, err := nats.Connect("nats://"+natsAddr, tok, nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("connected to the TLS listener without trusting its CA")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("connecting without the CA: %v, want a certificate error", err)
	}

	js := jetStreamAt(t, "tls://"+natsAddr, tok, nats.RootCAs(pki.CAFile))
	raw, err := json.Marshal(record("tls-1"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := schemas.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := r.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	m := &nats.Msg{Subject: bus.SubjectRecords, Data: leaf, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, "tls-1")
	if _, err := js.PublishMsg(ctxT(t, 10*time.Second), m); err != nil {
		t.Fatal(err)
	}
	s.waitProof(s.token("auditor", "query", "1h"), "tls-1")
}
