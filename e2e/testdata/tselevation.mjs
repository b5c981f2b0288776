// An MCP client on the official TypeScript SDK (npm @modelcontextprotocol/sdk),
// run by e2e/tsclient_test.go against examples/tickets with
// --elevation-from-meta and examples/policy.yaml, standing in for a
// gateway that puts each call's elevation into _meta. It prints one JSON
// object with what each call answered.
//
//   node tselevation.mjs COMMAND ARGS...
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [command, ...args] = process.argv.slice(2);
const client = new Client({ name: "ts-gateway", version: "1.0.0" });
await client.connect(new StdioClientTransport({ command, args, env: process.env, stderr: "inherit" }));

async function outcome(f) {
  try {
    const res = await f();
    const text = (res.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("");
    return { text, isError: res.isError === true };
  } catch (e) {
    return { error: { code: e.code, message: e.message } };
  }
}
const expires = new Date(Date.now() + 3600_000).toISOString();
const pay = (key, elevation) => outcome(() => client.callTool({
  name: "transfer_funds",
  arguments: { to: "acct-1", amount: 10 },
  _meta: elevation ? { idempotency_key: key, "proofline/elevation": elevation } : { idempotency_key: key },
}));

const out = {
  approved: await pay("pay-1", { scopes: ["payments:write"], approver: "bob@example.com", reason: "INC-7", expires }),
  unapproved: await pay("pay-2", { scopes: ["payments:write"], reason: "INC-7" }),
  none: await pay("pay-3", null),
};
console.log(JSON.stringify(out));
await client.close();
