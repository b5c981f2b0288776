// An MCP client on the official TypeScript SDK (npm @modelcontextprotocol/sdk),
// run by e2e/tsclient_test.go: it calls search_tickets N times on one
// examples/tickets server over streamable HTTP and prints one JSON list of
// what each call answered.
//
//   node tsbudget.mjs URL N
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, n] = process.argv.slice(2);
const client = new Client({ name: "ts-agent", version: "1.0.0" });
await client.connect(new StreamableHTTPClientTransport(new URL(url)));
const out = [];
for (let i = 0; i < Number(n); i++) {
  try {
    const res = await client.callTool({ name: "search_tickets", arguments: { query: "printer" } });
    out.push({ text: (res.content ?? []).map((c) => c.text ?? "").join(""), isError: res.isError === true });
  } catch (e) {
    out.push({ error: { code: e.code, message: e.message } });
  }
}
console.log(JSON.stringify(out));
await client.close();
