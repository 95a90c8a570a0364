// The web TV of `make demo`: a headless Chromium opens the app that `continuity broker --web`
// serves, pairs as "Web TV" (the demo's TV runs `continuity pair --yes`), and waits to be
// handed the session. When it plays, it saves a screenshot and says where its video is
// against where the device it came from stopped. Ends on SIGTERM or SIGINT (closing the
// browser), or after --timeout seconds.
//
//   node web/demo.js --web http://127.0.0.1:8080/ --account demo --out demo-out [--timeout 60]

import { parseArgs } from "node:util";
import { join } from "node:path";
import { Browser } from "./test/cdp.js";

const { values: opt } = parseArgs({
  options: {
    web: { type: "string" },
    account: { type: "string", default: "default" },
    out: { type: "string", default: "." },
    timeout: { type: "string", default: "90" },
  },
});
if (!opt.web) {
  console.error("usage: node web/demo.js --web URL [--account NAME] [--out DIR] [--timeout SECONDS]");
  process.exit(2);
}
const stamp = () => (Date.now() / 1000).toFixed(3);
const log = (text) => console.log(`[${stamp()} Web TV] ${text}`);

const browser = await Browser.launch();
const quit = async (code) => {
  await browser.close();
  process.exit(code);
};
setTimeout(() => {
  log(`gave up after ${opt.timeout} s`);
  quit(1);
}, Number(opt.timeout) * 1000).unref();
process.on("SIGTERM", () => quit(0));
process.on("SIGINT", () => quit(0));

try {
  const page = await browser.newPage(`${opt.web}?name=Web%20TV&account=${encodeURIComponent(opt.account)}`);
  await page.waitFor("!document.getElementById('pair').hidden", { what: "the pairing screen" });
  await page.eval("document.getElementById('pair-start').focus(); true");
  await page.press("Enter");
  log("pairing: waiting for a device that runs `continuity pair`");
  const code = await page.waitFor("!document.getElementById('pair-code-box').hidden && document.getElementById('pair-code').textContent", {
    timeout: 30000,
    what: "the pairing code",
  });
  log(`pairing code ${code}: the codes match, pressing Enter on "Yes"`);
  await page.press("Enter");
  await page.waitFor("continuityApp.device && continuityApp.device.synced", { timeout: 30000, what: "the broker" });
  log("paired and connected");
  await page.waitFor("continuityApp.device.active && !document.getElementById('video').paused", {
    timeout: Number(opt.timeout) * 1000,
    what: "a handoff to the web TV",
  });
  log("playing");
  await new Promise((r) => setTimeout(r, 1500));
  const s = await page.eval(`(() => {
    const d = continuityApp.device, v = document.getElementById("video");
    const from = [...d.sessions.values()].find((s) => s.device !== d.me.id && s.session === d.session);
    return { now: (Date.now() - performance.now() + performance.now()) * 1e6, currentTime: v.currentTime,
             from: from && { name: d.nameOf(from.device), position: Number(from.anchor.position_ns), at: Number(from.anchor.at_unix_ns), state: from.anchor.state } };
  })()`);
  if (s.from?.state === "paused") {
    const off = (s.currentTime * 1e9 - (s.from.position + (s.now - s.from.at))) / 1e6;
    log(`video at ${s.currentTime.toFixed(3)} s, ${off >= 0 ? "+" : ""}${off.toFixed(1)} ms from where ${s.from.name} stopped (same clock)`);
  }
  const shot = await page.screenshot(join(opt.out, "web-tv-after-handoff.png"));
  log(`screenshot saved: ${shot}`);
} catch (e) {
  log(`failed: ${e.message}`);
  await quit(1);
}
