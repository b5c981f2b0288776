// Package otelexporter is an OpenTelemetry Collector exporter (type
// "proofline") that turns agent→tool call spans into proofline call
// records and publishes them to the CALLS JetStream stream through
// publish.Publisher, the same publisher as the HTTP ingest API.
//
// It exists so that a deployment that already traces its agents and MCP
// servers with OpenTelemetry gets signed evidence of every tool call
// without a second instrumentation: the Collector forwards the spans it
// receives anyway, and the exporter keeps the tool calls.
//
// # Which spans become records
//
// A span is a tool call when its own attributes (not its resource's) say
// so: gen_ai.operation.name = "execute_tool", mcp.method.name =
// "tools/call", or a gen_ai.tool.name. Other spans are ignored and
// counted, unless include_unmatched is set. required_attribute narrows
// the match to spans carrying that attribute. A span with a
// proofline.record_id attribute is always ignored: the producer that set
// it (the MCP hook) has recorded that call already, and a record built
// from its span would be a second, different record of the same call.
//
// # Record fields
//
// Values are read from the span's attributes, then its resource's.
//
//	record_id          "otel-<trace id>-<span id>": a re-sent span is the same record, so
//	                   JetStream's Nats-Msg-Id window and the log's index keep one leaf
//	ts_start, ts_end   span start and end
//	trace              W3C trace id, span id, parent span id of the span
//	tool.name          gen_ai.tool.name, else the span name without "tools/call " / "execute_tool "
//	tool.server        tool.server, server.address, else service.name of a SERVER span's resource
//	tool.version       tool.version
//	tool.group         tool.group
//	actor              actor.id + actor.type (default agent); else gen_ai.agent.id / gen_ai.agent.name
//	                   (agent), user.id / enduser.id (user), service.name (service)
//	actor.on_behalf_of actor.on_behalf_of, enduser.id, user.id
//	mcp                mcp.method.name, mcp.session.id, jsonrpc.request.id; transport from
//	                   mcp.transport (stdio|http) or network.transport (pipe → stdio, tcp|quic → http)
//	scope_grants       scope.grants (string array, or one comma-separated string)
//	elevation          elevation.scopes (as scope.grants), elevation.approver, elevation.reason,
//	                   elevation.expires (RFC 3339); approver, reason or expiry without scopes is an error
//	policy             policy.decision (default allow, deny when the outcome is policy_blocked),
//	                   policy.rule, policy.reason
//	outcome.status     outcome.status when valid; else policy_blocked when the decision is deny;
//	                   else from an ERROR span status: error.type when it is one of the statuses
//	                   (as the MCP hook sets it), timeout when it names a timeout or deadline,
//	                   system_error when a JSON-RPC error code (rpc.response.status_code) is
//	                   present, tool_error otherwise; else ok
//	outcome.error_*    outcome.error_code, error.type or rpc.response.status_code; the span status message
//	args_sha256        proofline.args_sha256 or args.sha256; else the SHA-256 of gen_ai.tool.call.arguments
//	result_sha256      proofline.result_sha256 or result.sha256; else the SHA-256 of gen_ai.tool.call.result
//	cost               cost.amount, cost.currency, gen_ai.usage.input_tokens / cost.tokens_in,
//	                   gen_ai.usage.output_tokens / cost.tokens_out
//	workflow_id        workflow.id
//	plan_id            plan.id
//	region             cloud.region, region
//	data_class         data.class
//	attributes         the keys listed in copy_attributes, as strings
//	ingested_by        the exporter's principal (config), like the token's principal over HTTP
//
// Raw tool arguments and results never reach a record: when a span
// carries them (gen_ai.tool.call.arguments, gen_ai.tool.call.result) only
// their SHA-256 is kept, and copy_attributes refuses those keys.
//
// # Delivery
//
// A batch is reported to the Collector as exported only after JetStream
// has acknowledged every record of it. A record that is not a valid call
// record (schemas.Decode) is dropped, logged and counted; the batch fails
// with a permanent error only when none of its tool-call spans is valid.
// When NATS or the stream is unavailable the error is retryable, and the
// exporterhelper queue and retry settings apply; retrying is safe because
// the record id is the message id. The exporter never creates the stream:
// `proofline serve` owns its definition.
package otelexporter
