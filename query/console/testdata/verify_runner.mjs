// Runs the console's verify.js under Node (the same WebCrypto API as the
// browser) over the cases on stdin: [{name, bundle, vkey}] → [{name, ok,
// failed, detail}] on stdout.
import { verifyBundle } from "../assets/verify.js";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = [];
for (const c of JSON.parse(input)) {
  const r = await verifyBundle(c.bundle, c.vkey);
  const bad = r.steps.find((s) => !s.ok);
  out.push({ name: c.name, ok: r.ok, failed: bad ? bad.name : "", detail: bad ? bad.detail : "" });
}
process.stdout.write(JSON.stringify(out));
