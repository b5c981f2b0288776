// An MCP client on the official TypeScript SDK (npm @modelcontextprotocol/sdk),
// run by e2e/tsclient_test.go against examples/tickets with proofline's hook.
// It makes the calls clients the Go SDK did not write make, and prints one
// JSON object with what each call answered.
//
//   node tsclient.mjs stdio COMMAND ARGS...
//   node tsclient.mjs http URL
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [mode, ...rest] = process.argv.slice(2);
const transport = mode === "stdio"
  ? new StdioClientTransport({ command: rest[0], args: rest.slice(1), env: process.env, stderr: "inherit" })
  : new StreamableHTTPClientTransport(new URL(rest[0]));

const client = new Client({ name: "ts-agent", version: "1.0.0" });
await client.connect(transport);

// outcome runs one request and reports its answer or its JSON-RPC error.
async function outcome(f) {
  try {
    const res = await f();
    const text = (res.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("");
    return { text, isError: res.isError === true, tools: res.tools?.map((t) => t.name) };
  } catch (e) {
    return { error: { code: e.code, message: e.message } };
  }
}

const out = {
  // No params at all: {"jsonrpc":"2.0","id":N,"method":"tools/list"}.
  list: await outcome(() => client.listTools()),
  search: await outcome(() => client.callTool({ name: "search_tickets", arguments: { query: "printer" } })),
  unknown: await outcome(() => client.callTool({ name: "no_such_tool", arguments: {} })),
  denied: await outcome(() => client.callTool({ name: "delete_ticket", arguments: { id: 1 }, _meta: { idempotency_key: "del-1" } })),
  redacted: await outcome(() => client.callTool({ name: "send_email", arguments: { to: "alice@example.com", body: "hi" } })),
  // The server still answers after all of the above.
  again: await outcome(() => client.listTools()),
};
console.log(JSON.stringify(out));
await client.close();
