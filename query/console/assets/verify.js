// verify.js checks a proofline proof bundle in the browser, with nothing
// but WebCrypto and the specs: C2SP signed-note (Ed25519) for the
// checkpoint, RFC 8785 for the record's canonical bytes, RFC 6962 for the
// leaf hash and the inclusion proof. It shares no code with the server:
// a server that lies cannot make this page agree with it.
//
// Hand-written rather than a library because the console embeds its
// assets and fetches nothing, and each step is a few lines of a spec.

const enc = new TextEncoder();

// b64 decodes standard base64; it throws on anything else.
function b64(s) {
  if (typeof s !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) {
    throw new Error("not base64: " + String(s).slice(0, 40));
  }
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

// parseVerifierKey reads a signed-note verifier key,
// "name+hash+base64(0x01 || Ed25519 public key)", and checks its hash.
export async function parseVerifierKey(vkey) {
  // The name holds no "+"; the base64 key may.
  const s = String(vkey).trim();
  const i = s.indexOf("+"), j = s.indexOf("+", i + 1);
  if (i <= 0 || j < 0) throw new Error("a verifier key is name+hash+key");
  const name = s.slice(0, i), hash = s.slice(i + 1, j), keyB64 = s.slice(j + 1);
  const key = b64(keyB64);
  if (key.length !== 33 || key[0] !== 0x01) throw new Error("the verifier key is not an Ed25519 key");
  if (!/^[0-9a-f]{8}$/.test(hash)) throw new Error("the verifier key's hash is not 8 hex digits");
  const h = await sha256(concat(enc.encode(name + "\n"), key));
  if (hex(h.slice(0, 4)) !== hash) throw new Error("the verifier key's hash does not match its name and key");
  return { name, keyHash: h.slice(0, 4), publicKey: key.slice(1) };
}

// openCheckpoint verifies the note's signature by key and parses the
// checkpoint (origin, tree size, root hash) its text holds.
export async function openCheckpoint(noteText, key) {
  const sep = noteText.lastIndexOf("\n\n");
  if (sep < 0) throw new Error("the checkpoint is not a signed note (no blank line before the signatures)");
  const text = noteText.slice(0, sep + 1);
  const sigLines = noteText.slice(sep + 2).split("\n").filter((l) => l !== "");
  let sig = null;
  for (const line of sigLines) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Error("malformed signature line: " + line.slice(0, 60));
    if (m[1] !== key.name) continue;
    const raw = b64(m[2]);
    if (raw.length === 68 && equal(raw.slice(0, 4), key.keyHash)) { sig = raw.slice(4); break; }
  }
  if (!sig) throw new Error("the checkpoint has no signature by " + key.name);
  const pub = await crypto.subtle.importKey("raw", key.publicKey, { name: "Ed25519" }, false, ["verify"]);
  if (!(await crypto.subtle.verify({ name: "Ed25519" }, pub, sig, enc.encode(text)))) {
    throw new Error("the checkpoint's signature by " + key.name + " does not verify");
  }
  const lines = text.split("\n");
  if (lines.length < 4) throw new Error("a checkpoint has an origin, a tree size and a root hash");
  const [origin, sizeS, rootS] = lines;
  if (origin !== key.name) throw new Error(`checkpoint origin "${origin}", the key is for "${key.name}"`);
  if (!/^(0|[1-9][0-9]*)$/.test(sizeS)) throw new Error("malformed tree size: " + sizeS);
  const root = b64(rootS);
  if (root.length !== 32) throw new Error("the root hash is not 32 bytes");
  return { origin, size: BigInt(sizeS), root };
}

// canonicalJSON is RFC 8785: keys sorted by UTF-16 code units (what
// Array.prototype.sort compares), strings and numbers as ECMAScript's
// JSON.stringify writes them, which is how RFC 8785 defines them.
export function canonicalJSON(v) {
  if (v === null || typeof v === "boolean" || typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new Error("a number that is not finite");
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) return "[" + v.map(canonicalJSON).join(",") + "]";
  if (typeof v === "object") {
    return "{" + Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonicalJSON(v[k])).join(",") + "}";
  }
  throw new Error("not a JSON value");
}

// leafHash is the RFC 6962 leaf hash of the record's canonical bytes.
export async function leafHash(record) {
  if (record === null || typeof record !== "object" || Array.isArray(record)) throw new Error("the record is not a JSON object");
  return sha256(concat(new Uint8Array([0]), enc.encode(canonicalJSON(record))));
}

// rootFromInclusion is RFC 9162 section 2.1.3.2: the root the audit path
// leads to from the leaf at index in a tree of size.
export async function rootFromInclusion(index, size, leaf, path) {
  if (index >= size) throw new Error(`leaf index ${index} is outside the tree of size ${size}`);
  let fn = index, sn = size - 1n, r = leaf;
  const node = (l, rr) => sha256(concat(new Uint8Array([1]), l, rr));
  for (const p of path) {
    if (p.length !== 32) throw new Error("a proof hash is not 32 bytes");
    if (sn === 0n) throw new Error("the inclusion proof is longer than the tree allows");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await node(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      r = await node(r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("the inclusion proof is shorter than the tree needs");
  return r;
}

// verifyBundle runs every check in order and says which passed; the
// first failure ends it. ok is true only when all passed.
export async function verifyBundle(bundle, vkey) {
  const steps = [];
  const step = async (name, fn) => {
    try {
      const detail = await fn();
      steps.push({ name, ok: true, detail });
      return true;
    } catch (e) {
      steps.push({ name, ok: false, detail: e.message });
      return false;
    }
  };
  let key, cp, leaf;
  const result = { ok: false, steps };
  if (!(await step("verifier key", async () => { key = await parseVerifierKey(vkey); return key.name + " " + hex(key.keyHash); }))) return result;
  if (!(await step("checkpoint signature (Ed25519)", async () => {
    cp = await openCheckpoint(String(bundle.checkpoint || ""), key);
    return `${cp.origin}, tree size ${cp.size}, root ${hex(cp.root)}`;
  }))) return result;
  if (!(await step("leaf hash (RFC 8785, RFC 6962)", async () => { leaf = await leafHash(bundle.record); return hex(leaf); }))) return result;
  if (!(await step("inclusion proof (RFC 6962)", async () => {
    if (!Number.isSafeInteger(bundle.leaf_index) || bundle.leaf_index < 0) throw new Error("the leaf index is missing or not a whole number below 2^53");
    const path = (bundle.inclusion_proof || []).map(b64);
    const got = await rootFromInclusion(BigInt(bundle.leaf_index), cp.size, leaf, path);
    if (!equal(got, cp.root)) {
      throw new Error(`leaf hash ${hex(leaf)} at index ${bundle.leaf_index} leads to root ${hex(got)}, the checkpoint's root is ${hex(cp.root)}`);
    }
    return `leaf ${bundle.leaf_index} of ${cp.size}`;
  }))) return result;
  result.ok = true;
  result.origin = cp.origin;
  result.treeSize = cp.size.toString();
  result.leafIndex = bundle.leaf_index;
  return result;
}
