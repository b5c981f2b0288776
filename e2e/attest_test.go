package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/internal/attest"
	"github.com/proofline/proofline/internal/bus"
)

// TestAttestation: records ingested over HTTP carry ingest's attestation,
// which the signer trusts; a message that claims an attestation it does
// not have is checked in full like any producer's, and a non-canonical
// record is dead-lettered, never appended.
func TestAttestation(t *testing.T) {
	natsAddr := freeAddr(t)
	data := t.TempDir()
	s := startServer(t, data, "--nats-listen", natsAddr)
	gw, q := s.token("gw-1", "ingest", "1h"), s.token("auditor", "query", "1h")

	tok, err := os.ReadFile(filepath.Join(data, "keys", "nats.token"))
	if err != nil {
		t.Fatal(err)
	}
	js := jetStreamAt(t, "nats://"+natsAddr, nats.Token(strings.TrimSpace(string(tok))))
	ctx := ctxT(t, 60*time.Second)
	// A durable consumer of the test's own keeps the record in the stream
	// (interest retention) after the signer has it.
	if _, err := js.CreateConsumer(ctx, bus.StreamName, jetstream.ConsumerConfig{Durable: "attest-test", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}

	// Over HTTP: attested with the key in DATA/keys/attest.key.
	if code, _, pr, err := s.post(gw, jsonArray(t, record("att-http-1")), nil); err != nil || code != 202 || pr.Accepted != 1 {
		t.Fatalf("post: %d %+v %v", code, pr, err)
	}
	s.waitProof(q, "att-http-1")
	calls, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	m, err := calls.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	key, err := attest.LoadOrCreate(filepath.Join(data, "keys", "attest.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !key.Verify("att-http-1", m.Data, m.Header.Get(attest.Header)) {
		t.Fatalf("the ingested record's attestation %q does not verify", m.Header.Get(attest.Header))
	}

	// A producer with NATS access but not the key: a forged attestation
	// on bytes that are not canonical (spaces) must not reach the log.
	raw, _ := json.MarshalIndent(record("att-forged-1"), "", "  ")
	forged := &nats.Msg{Subject: bus.SubjectRecords, Data: raw, Header: nats.Header{}}
	forged.Header.Set(jetstream.MsgIDHeader, "att-forged-1")
	forged.Header.Set(attest.Header, key.Sign("att-other", raw)) // a real attestation, of another id
	if _, err := js.PublishMsg(ctx, forged); err != nil {
		t.Fatal(err)
	}
	dead, err := js.Stream(ctx, bus.DeadLetterStream)
	if err != nil {
		t.Fatal(err)
	}
	for {
		dm, err := dead.GetLastMsgForSubject(ctx, bus.SubjectDeadLetterPrefix+"signer")
		if err == nil && bytes.Equal(dm.Data, raw) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the forged record was not dead-lettered (last: %v)", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if code, body := s.get(q, "/v1/proof/att-forged-1"); code != 404 {
		t.Fatalf("the forged record is in the log: %d %s", code, body)
	}
}
