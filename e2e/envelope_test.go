package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/proofline/proofline/ingest/publish"
	"github.com/proofline/proofline/internal/attest"
	"github.com/proofline/proofline/internal/bus"
	"github.com/proofline/proofline/schemas"
)

// canonical is record(id) in the canonical form a producer publishes.
func canonical(t *testing.T, id string) []byte {
	t.Helper()
	raw, err := json.Marshal(record(id))
	if err != nil {
		t.Fatal(err)
	}
	r, err := schemas.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// envelopeMsg is an envelope as a producer other than proofline's ingest
// (the hook, the collector) would publish it, lines given as is.
func envelopeMsg(id string, lines ...[]byte) *nats.Msg {
	body := bytes.Join(lines, []byte("\n"))
	body = append(body, '\n')
	m := &nats.Msg{Subject: bus.SubjectRecords, Data: body, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Header.Set(publish.HeaderEnvelope, publish.EnvelopeV1)
	m.Header.Set(publish.HeaderRecords, strconv.Itoa(len(lines)))
	return m
}

func line(id string, data []byte) []byte { return append([]byte(id+" "), data...) }

// TestEnvelopes: an HTTP request's records travel in a few messages, not
// one per record, each attested as a whole; every record is provable.
// Envelopes from other producers are checked record by record: a bad
// record is dead-lettered on its own and the others are appended; an
// envelope that cannot be read at all is dead-lettered whole; the same
// envelope published again is dropped by JetStream and appended once;
// single-record messages (what earlier versions published, still in a
// stream after an upgrade) are appended as before.
func TestEnvelopes(t *testing.T) {
	natsAddr := freeAddr(t)
	data := t.TempDir()
	s := startServer(t, data, "--nats-listen", natsAddr)
	gw, q := s.token("gw-1", "ingest", "1h"), s.token("auditor", "query", "1h")
	tok, err := os.ReadFile(filepath.Join(data, "keys", "nats.token"))
	if err != nil {
		t.Fatal(err)
	}
	js := jetStreamAt(t, "nats://"+natsAddr, nats.Token(strings.TrimSpace(string(tok))))
	ctx := ctxT(t, 2*time.Minute)
	// A durable consumer of the test's own keeps the messages in the
	// stream (interest retention) after the signer has them.
	if _, err := js.CreateConsumer(ctx, bus.StreamName, jetstream.ConsumerConfig{Durable: "envelope-test", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	calls, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	key, err := attest.LoadOrCreate(filepath.Join(data, "keys", "attest.key"))
	if err != nil {
		t.Fatal(err)
	}

	// Over HTTP: 3000 records of about 700 bytes each are more than one
	// message may hold (1 MiB), so a few envelopes, each attested.
	httpIDs := ids("env-http", 3000)
	code, _, pr, err := s.post(gw, jsonArray(t, records(httpIDs)...), nil)
	if err != nil || code != 202 || pr.Accepted != len(httpIDs) {
		t.Fatalf("post: %d accepted %d %v", code, pr.Accepted, err)
	}
	for _, id := range []string{httpIDs[0], httpIDs[1499], httpIDs[2999]} {
		s.waitProof(q, id)
	}
	info, err := calls.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs < 2 || info.State.Msgs > 10 {
		t.Fatalf("%d messages for %d records, want a few envelopes", info.State.Msgs, len(httpIDs))
	}
	var carried []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := calls.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Data) > 1<<20 {
			t.Errorf("message %d holds %d bytes, over the max payload", seq, len(m.Data))
		}
		if !publish.VerifyEnvelope(key, m.Header.Get(jetstream.MsgIDHeader), m.Header.Get(attest.Header), m.Data) {
			t.Errorf("envelope %d: attestation %q does not verify", seq, m.Header.Get(attest.Header))
		}
		recs, err := publish.Records(m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			carried = append(carried, r.RecordID)
		}
	}
	if strings.Join(carried, ",") != strings.Join(httpIDs, ",") {
		t.Fatalf("the envelopes carry %d records, want the %d posted in order", len(carried), len(httpIDs))
	}
	var results []int
	for _, r := range pr.Results {
		results = append(results, int(r.StreamSeq))
	}
	if results[0] != int(info.State.FirstSeq) || results[len(results)-1] != int(info.State.LastSeq) {
		t.Errorf("stream_seq %d…%d, want the envelopes' %d…%d", results[0], results[len(results)-1], info.State.FirstSeq, info.State.LastSeq)
	}

	// From another producer: one good record, one not canonical, one
	// whose line names another id, one good under a forged attestation.
	pretty, _ := json.MarshalIndent(record("env-bad-pretty"), "", "  ")
	prettyLine := bytes.ReplaceAll(pretty, []byte("\n"), nil) // one line, but not canonical (spaces)
	mixed := envelopeMsg("mixed-1",
		line("env-good-1", canonical(t, "env-good-1")),
		line("env-bad-pretty", prettyLine),
		line("env-named-wrong", canonical(t, "env-good-2")),
		line("env-good-3", canonical(t, "env-good-3")),
	)
	mixed.Header.Set(attest.Header, key.Sign("other-envelope", mixed.Data)) // a real attestation, of another message
	if _, err := js.PublishMsg(ctx, mixed); err != nil {
		t.Fatal(err)
	}
	s.waitProof(q, "env-good-1")
	s.waitProof(q, "env-good-3")
	for _, id := range []string{"env-bad-pretty", "env-good-2", "env-named-wrong"} {
		if code, body := s.get(q, "/v1/proof/"+id); code != 404 {
			t.Errorf("%s is in the log: %d %s", id, code, body)
		}
	}

	// Unreadable: announces two records, carries one.
	broken := envelopeMsg("broken-1", line("env-lost-1", canonical(t, "env-lost-1")))
	broken.Header.Set(publish.HeaderRecords, "2")
	if _, err := js.PublishMsg(ctx, broken); err != nil {
		t.Fatal(err)
	}

	// The same envelope twice: JetStream drops the second.
	again := envelopeMsg("again-1", line("env-again-1", canonical(t, "env-again-1")), line("env-again-2", canonical(t, "env-again-2")))
	if _, err := js.PublishMsg(ctx, again); err != nil {
		t.Fatal(err)
	}
	again2 := envelopeMsg("again-1", line("env-again-1", canonical(t, "env-again-1")), line("env-again-2", canonical(t, "env-again-2")))
	if ack, err := js.PublishMsg(ctx, again2); err != nil || !ack.Duplicate {
		t.Fatalf("the same envelope again: %+v %v, want a duplicate", ack, err)
	}

	// What an earlier version published: one record per message.
	old := &nats.Msg{Subject: bus.SubjectRecords, Data: canonical(t, "env-single-1"), Header: nats.Header{}}
	old.Header.Set(jetstream.MsgIDHeader, publish.MsgID("env-single-1", old.Data))
	if _, err := js.PublishMsg(ctx, old); err != nil {
		t.Fatal(err)
	}
	s.waitProof(q, "env-again-2")
	s.waitProof(q, "env-single-1")

	// The dead letters: each bad record alone, with its id; the broken
	// envelope whole.
	var list struct {
		DeadLetters []struct {
			RecordID string `json:"record_id"`
			Reason   string `json:"reason"`
			Error    string `json:"error"`
		} `json:"dead_letters"`
	}
	out, errOut, code := cli(t, "dlq", "list", "--server", s.url, "--token", q, "--json")
	if code != 0 {
		t.Fatalf("dlq list: exit %d: %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("dlq list --json: %v: %s", err, out)
	}
	want := map[string]string{"env-bad-pretty": "canonical", "env-good-2": "env-named-wrong", "": "announced"}
	if len(list.DeadLetters) != len(want) {
		t.Fatalf("dead letters: %s, want %d", out, len(want))
	}
	for _, d := range list.DeadLetters {
		if w, ok := want[d.RecordID]; !ok || d.Reason != "invalid" || !strings.Contains(d.Error, w) {
			t.Errorf("dead letter %+v, want one of %v with reason invalid", d, want)
		}
	}

	// Every record is in the log once: the checkpoint counts them.
	total := len(httpIDs) + 2 + 2 + 1
	waitFor(t, "the checkpoint to count every record once", func() (bool, string) {
		code, body := s.get(q, "/checkpoint")
		lines := strings.SplitN(string(body), "\n", 3)
		if code != 200 || len(lines) < 2 {
			return false, string(body)
		}
		if n, _ := strconv.Atoi(lines[1]); n > total {
			t.Fatalf("checkpoint size %d, want %d: a record was appended twice", n, total)
		}
		return lines[1] == strconv.Itoa(total), string(body)
	})
}

// TestRetryOfASubsetIsOneLeaf: a record sent again among other records
// (here alone, after a request of two) while its first copy is still in
// the stream — no signer runs yet, so nothing can tell — is a second
// message, not a duplicate JetStream drops; the signer finds it in the
// log and it stays one leaf.
func TestRetryOfASubsetIsOneLeaf(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data, "--roles", "ingest")
	gw := s.token("gw-1", "ingest", "1h")
	if code, _, pr, err := s.post(gw, jsonArray(t, record("subset-1"), record("subset-2")), nil); err != nil || code != 202 || pr.Accepted != 2 {
		t.Fatalf("first post: %d %+v %v", code, pr, err)
	}
	if code, _, pr, err := s.post(gw, jsonArray(t, record("subset-2")), nil); err != nil || code != 202 || pr.Accepted+pr.Duplicates != 1 {
		t.Fatalf("second post: %d %+v %v", code, pr, err)
	}
	s.stop()
	s = startServer(t, data)
	q := s.token("auditor", "query", "1h")
	s.waitProof(q, "subset-2")
	s.waitProof(q, "subset-1")
	ids, size := logRecordIDs(t, s, q, filepath.Join(data, "keys", "log.pub"))
	if size != 2 || ids["subset-1"] != 1 || ids["subset-2"] != 1 {
		t.Fatalf("log of %d leaves holds %v, want subset-1 and subset-2 once each", size, ids)
	}
}
