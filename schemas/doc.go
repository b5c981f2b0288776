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
package schemas
