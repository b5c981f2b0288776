// Opens every page of the console of a server that holds nothing yet, in
// headless Chromium, and prints what each page showed: a new user's
// first look must be empty pages that say so, not script errors.
//
// Usage: node console_empty.mjs BASE TOKEN (screenshots to $SHOTS)
import { launch, shots } from "./chromium.mjs";

const [base, token] = process.argv.slice(2);
const browser = await launch();
const out = { errors: [], pages: {} };
const page = await (await browser.newContext({ viewport: { width: 1200, height: 900 } })).newPage();
page.on("pageerror", (e) => out.errors.push("pageerror: " + e.message));
try {
  await page.goto(`${base}/ui/`);
  await page.fill("input[name=token]", token);
  await page.click("#signin button");
  await page.waitForSelector(`main[data-page="latency"][aria-busy="false"]`, { timeout: 30000 });
  for (const name of ["latency", "burn", "cost", "plans", "onboarding", "records"]) {
    await page.evaluate(() => document.getElementById("main").removeAttribute("data-page"));
    await page.goto(`${base}/ui/#/${name}`);
    await page.waitForSelector(`main[data-page="${name}"][aria-busy="false"]`, { timeout: 30000 });
    out.pages[name] = await page.evaluate(() => ({
      alert: document.querySelector("main [role=alert]")?.textContent || null,
      empty: [...document.querySelectorAll(".empty")].map((e) => e.textContent),
      charts: document.querySelectorAll("svg.chart").length,
    }));
    await page.screenshot({ path: `${shots}/console-empty-${name}.png`, fullPage: true });
  }
} catch (e) {
  out.fatal = String(e.stack || e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out));
