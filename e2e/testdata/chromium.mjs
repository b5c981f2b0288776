// chromium.mjs starts Debian's Chromium ($CHROMIUM, set by the Go test)
// headless through playwright-core, for the console scripts. As root in a
// closed network: no sandbox, and none of Chromium's own background
// connections (refused here, and slow to fail).
import { chromium } from "playwright-core";

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
}

// shots is the directory screenshots go to ($SHOTS, set by the Go test).
export const shots = process.env.SHOTS;
