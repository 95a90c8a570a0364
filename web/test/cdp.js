// A small driver for a headless Chromium over the DevTools protocol, through
// --remote-debugging-pipe (file descriptors 3 and 4, messages separated by NUL bytes): no
// WebSocket, no npm package, and Debian's chromium. What the browser tests need: pages,
// script evaluation, key presses, screenshots, the accessibility tree, console output.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** How long a browser has to close before it is killed (a deadline: it bounds a failure). */
const CLOSE_DEADLINE_MS = 3000;

const KEYS = {
  Enter: { code: "Enter", keyCode: 13, text: "\r" },
  Escape: { code: "Escape", keyCode: 27 },
  Tab: { code: "Tab", keyCode: 9 },
  ArrowUp: { code: "ArrowUp", keyCode: 38 },
  ArrowDown: { code: "ArrowDown", keyCode: 40 },
  ArrowLeft: { code: "ArrowLeft", keyCode: 37 },
  ArrowRight: { code: "ArrowRight", keyCode: 39 },
  Backspace: { code: "Backspace", keyCode: 8 },
};

export class Browser {
  static async launch({ width = 1280, height = 720, log = () => {} } = {}) {
    const profile = mkdtempSync(join(tmpdir(), "continuity-chromium-"));
    const args = [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-extensions",
      "--mute-audio",
      "--autoplay-policy=no-user-gesture-required",
      "--remote-debugging-pipe",
      `--user-data-dir=${profile}`,
      `--window-size=${width},${height}`,
      "about:blank",
    ];
    const proc = spawn(CHROMIUM, args, { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
    const b = new Browser(proc, profile, log);
    proc.stderr.on("data", (d) => b.stderr.push(String(d)));
    await b.send("Target.setDiscoverTargets", { discover: true });
    return b;
  }

  constructor(proc, profile, log) {
    this.proc = proc;
    this.profile = profile;
    this.log = log;
    this.stderr = [];
    this.id = 0;
    this.waiting = new Map();
    this.listeners = [];
    this.exited = new Promise((r) => proc.on("exit", r));
    let buf = Buffer.alloc(0);
    proc.stdio[4].on("data", (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      let at;
      while ((at = buf.indexOf(0)) >= 0) {
        const msg = JSON.parse(buf.subarray(0, at).toString("utf8"));
        buf = buf.subarray(at + 1);
        this.dispatch(msg);
      }
    });
    proc.on("exit", (code) => {
      for (const w of this.waiting.values()) w.reject(new Error(`chromium exited (${code}): ${this.stderr.join("").slice(-2000)}`));
    });
  }

  dispatch(msg) {
    if (msg.id !== undefined) {
      const w = this.waiting.get(msg.id);
      this.waiting.delete(msg.id);
      if (msg.error) w?.reject(new Error(`${w.method}: ${msg.error.message}`));
      else w?.resolve(msg.result);
      return;
    }
    for (const l of this.listeners) l(msg);
  }

  send(method, params = {}, sessionId) {
    const id = ++this.id;
    const msg = { id, method, params };
    if (sessionId) msg.sessionId = sessionId;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, method });
      this.proc.stdio[3].write(`${JSON.stringify(msg)}\0`);
    });
  }

  async newPage(url) {
    const { targetId } = await this.send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    const page = new Page(this, sessionId);
    this.listeners.push((m) => m.sessionId === sessionId && page.event(m));
    await page.send("Page.enable");
    await page.send("Runtime.enable");
    if (url) await page.goto(url);
    return page;
  }

  async close() {
    try {
      // A deadline, not a wait: a browser that does not close by then is killed below.
      await Promise.race([this.send("Browser.close"), new Promise((r) => setTimeout(r, CLOSE_DEADLINE_MS))]);
    } catch {
      // already gone
    }
    // A deadline, not a wait: killed only if it has not exited by then.
    const killed = setTimeout(() => this.proc.kill("SIGKILL"), CLOSE_DEADLINE_MS);
    await this.exited;
    clearTimeout(killed);
    rmSync(this.profile, { recursive: true, force: true });
  }
}

export class Page {
  constructor(browser, sessionId) {
    this.browser = browser;
    this.sessionId = sessionId;
    this.console = [];
    this.loaded = null;
  }

  send(method, params) {
    return this.browser.send(method, params, this.sessionId);
  }

  event(m) {
    if (m.method === "Runtime.consoleAPICalled") {
      const text = m.params.args.map((a) => a.value ?? a.description ?? "").join(" ");
      this.console.push(`${m.params.type}: ${text}`);
      this.browser.log(`[page ${m.params.type}] ${text}`);
    } else if (m.method === "Runtime.exceptionThrown") {
      const d = m.params.exceptionDetails;
      const text = `${d.text} ${d.exception?.description ?? ""}`;
      this.console.push(`exception: ${text}`);
      this.browser.log(`[page exception] ${text}`);
    } else if (m.method === "Page.loadEventFired") {
      this.loaded?.();
    }
  }

  async goto(url) {
    const loaded = new Promise((r) => (this.loaded = r));
    const r = await this.send("Page.navigate", { url });
    if (r.errorText) throw new Error(`cannot open ${url}: ${r.errorText}`);
    await loaded;
  }

  /** Evaluate `expression` (awaiting a promise) and return its value. */
  async eval(expression) {
    const r = await this.send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) {
      throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    }
    return r.result.value;
  }

  /** Wait until `expression` is truthy; returns its value. */
  async waitFor(expression, { timeout = 10000, what = expression } = {}) {
    const end = Date.now() + timeout;
    for (;;) {
      const v = await this.eval(expression).catch(() => undefined);
      if (v) return v;
      if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Press a key as a remote control or keyboard does (keydown, keyup). */
  async press(key) {
    const k = KEYS[key];
    if (!k) throw new Error(`no key ${key}`);
    const common = { key, code: k.code, windowsVirtualKeyCode: k.keyCode, nativeVirtualKeyCode: k.keyCode };
    await this.send("Input.dispatchKeyEvent", { type: k.text ? "keyDown" : "rawKeyDown", text: k.text, ...common });
    await this.send("Input.dispatchKeyEvent", { type: "keyUp", ...common });
  }

  async screenshot(path) {
    const { data } = await this.send("Page.captureScreenshot", { format: "png" });
    writeFileSync(path, Buffer.from(data, "base64"));
    return path;
  }

  /** The id and text of the focused element. */
  focused() {
    return this.eval("({id: document.activeElement?.id ?? null, text: document.activeElement?.textContent?.trim() ?? ''})");
  }

  /** Chromium's accessibility tree of the page (what a screen reader gets). */
  async axTree() {
    await this.send("Accessibility.enable");
    const { nodes } = await this.send("Accessibility.getFullAXTree");
    return nodes;
  }
}
