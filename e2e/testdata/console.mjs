// Drives proofline's console in headless Chromium (Debian's, through
// playwright-core) and prints what a person would have seen, as JSON, for
// the Go test to compare with the API: every table's cells, every chart's
// points, the record page's verdicts (as served, tampered in flight, and
// against a pinned wrong key), and the weekly report rendered.
//
// Usage: node console.mjs BASE TOKEN RECORD_ID REPORT_HTML WRONG_VKEY (screenshots to $SHOTS)
import { launch, shots } from "./chromium.mjs";

const [base, token, recordId, reportPath, wrongKey] = process.argv.slice(2);
const browser = await launch();
const out = { errors: [], pages: {}, record: {} };
const page = await (await browser.newContext({ viewport: { width: 1200, height: 900 } })).newPage();
try {
  page.on("pageerror", (e) => out.errors.push("pageerror: " + e.message));
  page.on("console", (m) => { if (m.type() === "error") out.errors.push("console: " + m.text()); });

  const settle = async (name) => {
    await page.waitForSelector(`main[data-page="${name}"][aria-busy="false"]`, { timeout: 30000 });
  };
  const go = async (hash, name) => {
    await page.evaluate(() => document.getElementById("main").removeAttribute("data-page"));
    await page.goto(`${base}/ui/#/${hash}`);
    await settle(name);
  };
  const read = () => page.evaluate(() => ({
    title: document.querySelector("main h1")?.textContent,
    alert: document.querySelector("main [role=alert]")?.textContent || null,
    tables: Object.fromEntries([...document.querySelectorAll("table[data-table]")].map((t) => [t.dataset.table,
      [...t.querySelectorAll("tbody tr")].filter((tr) => tr.querySelector("td[data-col]")).map((tr) =>
        Object.fromEntries([...tr.querySelectorAll("td[data-col]")].map((td) => [td.dataset.col, td.textContent])))])),
    figures: Object.fromEntries([...document.querySelectorAll("[data-figure]")].map((e) => [e.dataset.figure, e.textContent])),
    charts: [...document.querySelectorAll("svg.chart")].map((s) => ({
      title: s.querySelector("title").textContent,
      drawn: s.getBoundingClientRect().width > 100 && s.getBoundingClientRect().height > 100,
      refs: [...s.querySelectorAll("line.ref")].map((l) => ({ label: l.dataset.ref, v: Number(l.dataset.v) })),
      series: [...s.querySelectorAll("g[data-series]")].map((g) => ({
        name: g.dataset.series,
        points: [...g.querySelectorAll("circle")].map((c) => ({ t: c.dataset.t, v: Number(c.dataset.v) })),
      })),
    })),
  }));

  // A wrong token is refused and the sign-in form says so.
  await page.goto(`${base}/ui/`);
  await page.fill("input[name=token]", "not-a-token");
  await page.click("#signin button");
  await page.waitForSelector("#signin [role=alert]");
  out.badToken = await page.textContent("#signin [role=alert]");
  out.errors.length = 0; // Chromium logs the refused request; that one was meant
  await page.fill("input[name=token]", token);
  await page.click("#signin button");
  await settle("latency");

  for (const [hash, name] of [["latency?range=24h", "latency"], ["burn?range=24h", "burn"], ["cost", "cost"],
    ["plans?range=28d", "plans"], ["onboarding", "onboarding"], ["records", "records"]]) {
    await go(hash, name);
    out.pages[name] = await read();
    await page.screenshot({ path: `${shots}/console-${name}.png`, fullPage: true });
  }

  // Paging: ten at a time, then the next ten through the page's link.
  const ids = () => page.$$eval("td[data-col=record_id]", (tds) => tds.map((td) => td.textContent));
  await go("records?limit=10", "records");
  const first = await ids();
  await page.evaluate(() => document.getElementById("main").removeAttribute("data-page"));
  await page.click("a.older");
  await settle("records");
  out.paging = { first, second: await ids() };
  await go("records", "records");

  const verdict = async () => page.evaluate(() => ({
    verdict: document.querySelector("[data-verdict]")?.dataset.verdict,
    text: document.querySelector("[data-verdict]")?.textContent,
    steps: [...document.querySelectorAll("[data-step]")].map((li) => ({ name: li.dataset.step, ok: li.classList.contains("ok"), text: li.textContent })),
  }));
  // The record's page, from the records list's link (the list is on
  // screen from the loop above).
  await page.evaluate(() => document.getElementById("main").removeAttribute("data-page"));
  await page.click(`a[href="#/record/${encodeURIComponent(recordId)}"]`);
  await settle("record");
  out.record.served = await verdict();
  await page.screenshot({ path: `${shots}/console-record.png`, fullPage: true });

  // The same page with the bundle tampered with in flight, as a lying
  // server or a proxy would.
  const tampers = {
    record: (b) => { b.record.outcome = { status: "ok", note: "rewritten" }; },
    signature: (b) => {
      b.checkpoint = b.checkpoint.replace(/^(\u2014 \S+ )(\S+)$/m, (_, p, s) => p + s.slice(0, 20) + (s[20] === "A" ? "B" : "A") + s.slice(21));
    },
    proof: (b) => { b.inclusion_proof[0] = (b.inclusion_proof[0][0] === "A" ? "B" : "A") + b.inclusion_proof[0].slice(1); },
  };
  for (const [kind, f] of Object.entries(tampers)) {
    await page.route("**/v1/proof/**", async (route) => {
      const res = await route.fetch();
      const b = await res.json();
      f(b);
      await route.fulfill({ response: res, body: JSON.stringify(b) });
    });
    await page.evaluate(() => document.getElementById("main").removeAttribute("data-page"));
    await page.reload();
    await settle("record");
    out.record[kind] = await verdict();
    if (kind === "record") await page.screenshot({ path: `${shots}/console-record-tampered.png`, fullPage: true });
    await page.unrouteAll();
  }

  // A pinned key that is not the log's: the served bundle fails.
  await page.evaluate(() => document.getElementById("main").removeAttribute("data-page"));
  await page.reload();
  await settle("record");
  await page.fill("input[name=vkey]", wrongKey);
  await page.evaluate(() => document.getElementById("main").removeAttribute("data-page"));
  await page.click("form.pin button");
  await settle("record");
  out.record.pinnedWrongKey = await verdict();
  await page.fill("input[name=vkey]", "");
  await page.evaluate(() => document.getElementById("main").removeAttribute("data-page"));
  await page.click("form.pin button");
  await settle("record");
  out.record.unpinned = await verdict();

  // The weekly report, a file, rendered as a person would open it.
  await page.goto("file://" + reportPath);
  out.report = await page.evaluate(() => ({
    title: document.title,
    svgs: [...document.querySelectorAll("svg")].map((s) => ({ w: s.getBoundingClientRect().width, h: s.getBoundingClientRect().height })),
    tables: document.querySelectorAll("table").length,
  }));
  await page.screenshot({ path: `${shots}/report.png`, fullPage: true });
} catch (e) {
  // Said, with the page as it stood, rather than thrown: the Go test
  // reports it with everything seen until then.
  out.fatal = String(e.stack || e);
  out.html = await page.content().catch(() => "");
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
