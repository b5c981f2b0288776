// An MCP client on the official TypeScript SDK (npm @modelcontextprotocol/sdk),
// run by e2e/tsclient_test.go against examples/tickets with breakers on
// (--breaker-failures 3 --breaker-open-for 1s). It takes the CRM behind
// crm_lookup down and up again by the file the server watches
// (--crm-down-file, passed here in CRM_DOWN_FILE), and prints one JSON
// object with what each call answered.
//
//   node tsbreaker.mjs COMMAND ARGS...
import { writeFileSync, unlinkSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [command, ...args] = process.argv.slice(2);
const down = process.env.CRM_DOWN_FILE;
const client = new Client({ name: "ts-agent", version: "1.0.0" });
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
const crm = () => outcome(() => client.callTool({ name: "crm_lookup", arguments: { customer: "acme" } }));

const out = { before: await crm(), failing: [] };
writeFileSync(down, "down");
for (let i = 0; i < 3; i++) out.failing.push(await crm());
out.refused = await crm();
out.other = await outcome(() => client.callTool({ name: "search_tickets", arguments: { query: "printer" } }));
unlinkSync(down);
// Past --breaker-open-for: the next call is the half-open breaker's probe.
await new Promise((r) => setTimeout(r, 1500));
out.probe = await crm();
out.after = await crm();
console.log(JSON.stringify(out));
await client.close();
