// Package schemas is proofline's contract: the call record v1 (its JSON
// Schema, Go types and validation) and its canonical encoding.
//
// A call record describes one agent→tool call. It is what gateways post,
// what JetStream carries, what the Merkle log stores as a leaf and what
// ClickHouse stores as a span, so it is defined once, here, with no
// dependency on any of those engines.
//
// The leaf of the log is the record's RFC 8785 (JSON Canonicalization
// Scheme) encoding and its hash is the RFC 6962 leaf hash: the same record
// gives the same bytes on every machine, so an auditor holding a record can
// recompute its leaf hash without any proofline code.
//
// A record must be I-JSON (RFC 7493), not just JSON: one reading for
// proofline, a SIEM and a person alike. Duplicate member names, lone
// surrogate escapes, numbers a double does not hold (overflow, a non-zero
// number that rounds to 0, an integer beyond ±(2^53-1)) and timestamps
// finer than nanoseconds are rejected with the member's JSON path, never
// stored under a reading of proofline's choosing.
package schemas
