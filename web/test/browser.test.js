// The web TV in a real headless Chromium (Debian's), against the real tool: the embedded
// broker serving the app and a media folder, `continuity pair` on the phone's side, a phone
// player (`continuity play http://…`), and `continuity transfer`. A spy on the broker sees
// every payload. Screenshots go to target/web-test/.
//
// Needs target/debug/continuity (make test builds it), gst-launch-1.0 and chromium.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Browser } from "./cdp.js";
import { fromHex, utf8 } from "../contract/bytes.js";
import { subtle } from "../contract/crypto.js";
import { stringify } from "../contract/json.js";
import { deriveKeys, seal } from "../contract/seal.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const bin = process.env.CONTINUITY_BIN ?? join(root, "target", "debug", "continuity");
const shots = join(root, "target", "web-test");
const axePath = join(root, "web", "node_modules", "axe-core", "axe.min.js");
const ACCOUNT = "webtest";
/** Published last, so that the spy knows it has seen everything. */
const MARKER = "continuity/spy-marker";
const MS = 1e6;

const work = mkdtempSync(join(tmpdir(), "continuity-web-"));
const procs = [];
const verbose = !!process.env.VERBOSE;
const say = (...a) => verbose && console.log(...a);

/** A process with its output kept by line; `waitLine(re)` resolves with the first match
 * (from its `from`th line on, when given). */
function start(cmd, args, name) {
  // Its own process group, so that the signals reach whatever it starts too.
  const p = spawn(cmd, args, { detached: true, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } });
  p.signal = (sig) => {
    try {
      process.kill(-p.pid, sig);
    } catch {
      // Gone already.
    }
  };
  p.lines = [];
  p.waiters = [];
  /** Called with each line as it comes. */
  p.onLine = [];
  p.name = name;
  p.done = new Promise((r) => p.on("exit", (code, signal) => r(code ?? signal)));
  const take = (stream) => {
    let rest = "";
    stream.on("data", (d) => {
      rest += d;
      const lines = rest.split("\n");
      rest = lines.pop();
      for (const l of lines) {
        p.lines.push(l);
        say(`[${name}] ${l}`);
        for (const f of p.onLine) f(l);
        for (const w of [...p.waiters]) {
          const m = w.test(l);
          if (m) {
            p.waiters.splice(p.waiters.indexOf(w), 1);
            w.resolve(m);
          }
        }
      }
    });
  };
  take(p.stdout);
  take(p.stderr);
  // `re`: a RegExp, or a function of the line (a match is then `[line]`).
  p.waitLine = (re, timeout = 15000, from = 0) => {
    const test = typeof re === "function" ? (l) => (re(l) ? [l] : null) : (l) => l.match(re);
    const m = p.lines.slice(from).map(test).find(Boolean);
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name}: no line like ${re} within ${timeout} ms; output:\n${p.lines.join("\n")}`)), timeout);
      p.waiters.push({ test, resolve: (m) => (clearTimeout(timer), resolve(m)) });
    });
  };
  procs.push(p);
  return p;
}

/** libfaketime, from Debian's faketime package (its multiarch directory). */
function libfaketime() {
  for (const dir of readdirSync("/usr/lib").filter((d) => d.endsWith("-linux-gnu"))) {
    const lib = join("/usr/lib", dir, "faketime", "libfaketime.so.1");
    if (existsSync(lib)) return lib;
  }
  throw new Error("libfaketime.so.1 is missing (apt-get install faketime)");
}

/**
 * A `continuity` whose wall clock is `skew` off (libfaketime), its monotonic clock not.
 * Preloaded directly: the `faketime` wrapper keeps a semaphore and shared memory named by
 * its pid in /dev/shm, left behind when it is killed, and a later wrapper given the same pid
 * fails with "sem_open: File exists".
 */
function spawnSkewed(skew, args, name) {
  const saved = { ...process.env };
  Object.assign(process.env, { LD_PRELOAD: libfaketime(), FAKETIME: skew, FAKETIME_DONT_FAKE_MONOTONIC: "1" });
  try {
    return start(bin, args, name);
  } finally {
    for (const k of ["LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC"]) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
  }
}

const cli = (dir, ...args) => [`--config-dir`, join(work, dir), "--broker", broker, "--account", ACCOUNT, ...args];
let broker;

function clip(path, seconds = 40) {
  // `seconds` of a test pattern with a visible timecode, VP8 and Vorbis in WebM: what both
  // GStreamer and Chromium play. 25 frames a second; audio buffers of 1024 samples.
  const r = spawnSync(
    "gst-launch-1.0",
    [
      "-q",
      ...`videotestsrc num-buffers=${seconds * 25} pattern=smpte ! video/x-raw,width=320,height=180,framerate=25/1`.split(" "),
      ..."! timeoverlay font-desc=Sans,24 halignment=center valignment=center ! vp8enc deadline=1 cpu-used=8 keyframe-max-dist=25".split(" "),
      ..."! webmmux name=mux ! filesink".split(" "),
      `location=${path}`,
      ...`audiotestsrc num-buffers=${Math.ceil((seconds * 44100) / 1024)} ! audio/x-raw,rate=44100,channels=1 ! audioconvert ! vorbisenc ! mux.`.split(" "),
    ],
    { encoding: "utf8" },
  );
  assert.equal(r.status, 0, `gst-launch-1.0 could not make the clip: ${r.stderr}`);
}

/** 30 s of a test pattern in Ogg, Theora and Vorbis: what GStreamer plays and Chromium does not show. */
function theoraClip(path) {
  const r = spawnSync(
    "gst-launch-1.0",
    [
      "-q",
      ..."videotestsrc num-buffers=750 pattern=smpte ! video/x-raw,width=320,height=180,framerate=25/1".split(" "),
      ..."! timeoverlay font-desc=Sans,24 halignment=center valignment=center ! theoraenc ! oggmux name=mux ! filesink".split(" "),
      `location=${path}`,
      ..."audiotestsrc num-buffers=1292 ! audio/x-raw,rate=44100,channels=1 ! audioconvert ! vorbisenc ! mux.".split(" "),
    ],
    { encoding: "utf8" },
  );
  assert.equal(r.status, 0, `gst-launch-1.0 could not make the Ogg Theora clip: ${r.stderr}`);
}

/** Run `continuity` with `args` to its end: its exit code, and its stdout and stderr apart. */
function run(args, name) {
  return new Promise((resolve) => {
    const p = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (code, signal) => {
      say(`[${name}] exit ${code ?? signal}\n${stdout}${stderr}`);
      resolve({ code: code ?? signal, stdout, stderr });
    });
  });
}

/** The first document of `continuity sessions --watch --json` (one per line, again at each
 * change), run as the device whose config dir is `dir`, for which `ok(doc)` holds, within
 * `ms`; the last one seen goes to `failed(doc)` otherwise. */
async function sessionsWhen(dir, ok, failed, ms = 10000) {
  const watch = start(bin, cli(dir, "sessions", "--watch", "--json"), `sessions --watch (${dir})`);
  let last = null;
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(failed(last))), ms);
      const check = (line) => {
        if (!line.startsWith("{")) return;
        last = JSON.parse(line);
        if (ok(last)) {
          clearTimeout(timer);
          resolve(last);
        }
      };
      watch.lines.forEach(check);
      watch.onLine.push(check);
      watch.done.then(() => reject(new Error(`sessions --watch ended:\n${watch.lines.join("\n")}`)));
    });
  } finally {
    watch.signal("SIGKILL");
  }
}

/** What `continuity sessions --json` prints, run as the device whose config dir is `dir`. */
async function sessionsJson(dir) {
  const r = await run(cli(dir, "sessions", "--json"), `sessions (${dir})`);
  assert.equal(r.code, 0, `continuity sessions failed:\n${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** `msg` sealed and signed as the device whose config dir is `dir` would on `topic`. */
async function sealAs(dir, device, topic, msg, counter) {
  const pem = readFileSync(join(dir, "device.key"), "utf8");
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s/g, ""), "base64");
  const signer = await subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
  const keys = await deriveKeys(fromHex(readFileSync(join(dir, "accounts", `${ACCOUNT}.key`), "utf8").trim()));
  return seal(keys, signer, topic, device, counter, utf8(stringify(msg)));
}

/** The JSON document that `continuity transfer --json` printed (stderr may follow it). */
function transferJson(lines) {
  const from = lines.indexOf("{");
  const to = lines.indexOf("}", from);
  assert.ok(from >= 0 && to > from, `no JSON from transfer:\n${lines.join("\n")}`);
  return JSON.parse(lines.slice(from, to + 1).join("\n"));
}

/** Publish `word` on the marker topic, retained, and wait for the spy to have it: then it is
 *  subscribed (a retained message comes with the subscription), and it has everything
 *  published before (a broker delivers in order). */
async function spySees(spy, port, word) {
  const r = spawnSync("mosquitto_pub", ["-h", "127.0.0.1", "-p", port, "-r", "-t", MARKER, "-m", word]);
  assert.equal(r.status, 0, `mosquitto_pub: ${r.stderr}`);
  await spy.waitLine(new RegExp(`^${MARKER}\t${word}$`));
}

/** The page's view of a device's session and of its own player. */
const snapshot = (page, device) =>
  page.eval(`(() => {
    const d = continuityApp.device, v = document.getElementById("video");
    const s = d.sessions.get(${JSON.stringify(device)});
    const now = d.player && (${"Date.now() - performance.now()"} + performance.now()) * 1e6;
    return { now, currentTime: v.currentTime, paused: v.paused,
             other: s && s.anchor ? { position_ns: Number(s.anchor.position_ns), at: Number(s.anchor.at_unix_ns), state: s.anchor.state, lease: s.lease.device } : null,
             own: d.anchor ? { position_ns: Number(d.anchor.position_ns), at: Number(d.anchor.at_unix_ns), state: d.anchor.state } : null,
             lease: d.lease.device };
  })()`);

if (!existsSync(axePath)) console.log("# axe-core is not installed (scripts/web-deps.sh said why): no axe-core audit in this run");

async function axe(page, screen) {
  if (!existsSync(axePath)) return null;
  const installed = await page.eval("typeof axe !== 'undefined'");
  if (!installed) await page.eval(readFileSync(axePath, "utf8") + ";true");
  const r = await page.eval(`axe.run(document, { resultTypes: ["violations"] }).then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")) })))`);
  assert.deepEqual(r, [], `axe-core on the ${screen} screen`);
  return r.length;
}

/** Every control reachable by Tab, and every one a named control in Chromium's accessibility tree. */
async function keyboardAndNames(page, screen) {
  const controls = await page.eval(`[...document.querySelectorAll("button, input, a[href]")]
      .filter((e) => !e.disabled && e.offsetParent !== null && !e.closest("[hidden]")).map((e) => e.id || e.textContent.trim())`);
  const reached = new Set();
  await page.eval("document.activeElement?.blur(); document.body.focus(); true");
  for (let i = 0; i < controls.length + 3; i++) {
    await page.press("Tab");
    const f = await page.focused();
    reached.add(f.id || f.text);
  }
  const missed = controls.filter((c) => !reached.has(c));
  assert.deepEqual(missed, [], `controls the keyboard does not reach on the ${screen} screen`);
  const nodes = await page.axTree();
  const unnamed = nodes.filter((n) => !n.ignored && ["button", "textbox", "progressbar"].includes(n.role?.value) && !n.name?.value);
  assert.deepEqual(unnamed.map((n) => n.role.value), [], `controls without an accessible name on the ${screen} screen`);
}

/** Press arrows until the control whose text is `text` has the focus. */
async function arrowTo(page, text) {
  for (const key of ["ArrowDown", "ArrowRight", "ArrowDown", "ArrowRight", "ArrowUp", "ArrowDown", "ArrowRight", "ArrowRight", "ArrowDown", "ArrowLeft"]) {
    if ((await page.focused()).text === text) return;
    await page.press(key);
  }
  assert.equal((await page.focused()).text, text, "the arrow keys reach the control");
}

test("the web TV pairs, takes a session from a phone, hands it back, and offers to resume", { timeout: 240000 }, async (t) => {
  assert.ok(existsSync(bin), `${bin} is missing: build it first (cargo build)`);
  mkdirSync(shots, { recursive: true });
  const media = join(work, "media");
  mkdirSync(media);
  clip(join(media, "clip.webm"));
  theoraClip(join(media, "film.ogg"));
  for (const [lang, text] of [["en", "English captions"], ["fr", "Sous-titres en français"]]) {
    writeFileSync(join(media, `clip.${lang}.vtt`), `WEBVTT\n\n00:00:00.000 --> 00:00:40.000\n${text}\n`);
  }

  const b = start(bin, ["broker", "--no-advertise", "--listen", "127.0.0.1:0", "--web", "127.0.0.1:0", "--media", media], "broker");
  broker = (await b.waitLine(/listening on (mqtt:\/\/\S+)/))[1];
  const web = (await b.waitLine(/web app \(open it on the TV\): (http:\/\/\S+)/))[1];
  const uri = `${web}media/clip.webm`;
  const port = new URL(broker).port;
  const spy = start("mosquitto_sub", ["-h", "127.0.0.1", "-p", port, "-t", "continuity/#", "-v", "-F", "%t\t%p"], "spy");
  await spySees(spy, port, "ready");

  const browser = await Browser.launch({ log: say });
  t.after(() => browser.close());
  const page = await browser.newPage(`${web}?name=Web%20TV&account=${ACCOUNT}`);
  await page.waitFor("!document.getElementById('pair').hidden", { what: "the pairing screen" });
  await axe(page, "pairing");
  await keyboardAndNames(page, "pairing");

  await t.test("the page pairs with `continuity pair`", async () => {
    await page.eval("document.getElementById('pair-start').focus(); true");
    await page.press("Enter");
    const host = start(bin, cli("phone", "pair", "--yes", "--no-advertise", "--device-name", "Phone", "--timeout", "60"), "pair");
    const code = (await host.waitLine(/Verification code: (\d{3} \d{3})/))[1];
    const shown = await page.waitFor("!document.getElementById('pair-code-box').hidden && document.getElementById('pair-code').textContent", { what: "the code" });
    assert.equal(shown, code, "the page and `continuity pair` show the same code");
    await page.screenshot(join(shots, "web-tv-pairing.png"));
    await axe(page, "pairing code");
    assert.equal((await page.focused()).id, "pair-yes", "the answer has the focus");
    await page.press("Enter");
    assert.equal(await host.done, 0, `continuity pair failed:\n${host.lines.join("\n")}`);
    await page.waitFor("!document.getElementById('home').hidden && continuityApp.device.synced", { what: "home, connected" });
    const roster = await page.eval("continuityApp.device.membership.roster.devices.map((d) => d.device)");
    const phoneId = readFileSync(join(work, "phone", "device-id"), "utf8").trim();
    const webId = await page.eval("continuityApp.device.me.id");
    assert.deepEqual(roster.sort(), [phoneId, webId].sort(), "the roster holds the phone and the web TV");
  });

  const phone = start(bin, cli("phone", "play", "--no-advertise", uri, "--device-name", "Phone", "--device-class", "phone"), "phone");
  await phone.waitLine(/\] playing$/, 20000);
  const phoneId = readFileSync(join(work, "phone", "device-id"), "utf8").trim();
  await page.waitFor(`!!document.getElementById("here-${phoneId}")`, { what: "the phone's session with 'Continue here'" });
  // A card that has moved on a little, for the picture.
  await page.waitFor(`continuityApp.device.livePosition(continuityApp.device.sessions.get("${phoneId}")) > 2e9`, { what: "the phone 2 s in" });
  await page.screenshot(join(shots, "web-tv-home.png"));
  await axe(page, "home");
  await keyboardAndNames(page, "home");

  // When the transfer ended (after the switch), and how much the phone had said by then.
  let transferred = null;
  await t.test("phone → web TV with `continuity transfer --to \"Web TV\"`", async () => {
    const tr = start(bin, cli("phone", "transfer", "--to", "Web TV", "--json"), "transfer");
    assert.equal(await tr.done, 0, `transfer failed:\n${tr.lines.join("\n")}`);
    transferred = { at: Date.now(), lines: phone.lines.length };
    const result = JSON.parse(tr.lines.join("\n"));
    say(result);
    assert.ok(Math.abs(result.position_error_ms) < 100, `position error ${result.position_error_ms} ms`);
    await page.waitFor(`(() => { const s = continuityApp.device.sessions.get("${phoneId}"); return s && s.anchor.state === "paused" && !document.getElementById("video").paused; })()`, {
      what: "the phone paused and the web TV playing",
    });
    // Measured after half a second of playing, not only at the switch.
    await page.waitFor(`(() => { const s = continuityApp.device.sessions.get("${phoneId}"); return document.getElementById("video").currentTime * 1e9 > Number(s.anchor.position_ns) + 500e6; })()`, { what: "half a second played" });
    const s = await snapshot(page, phoneId);
    // Same host, same clock: where the phone stopped plus the time since is where the TV is.
    const expected = s.other.position_ns + (s.now - s.other.at);
    const error = s.currentTime * 1e9 - expected;
    say({ error_ms: error / MS, s, start: await page.eval("(() => { const l = continuityApp.player.lastStart; return l && Object.fromEntries(Object.entries(l).map(([k, v]) => [k, Number(v) / 1e6])); })()") });
    assert.ok(Math.abs(error) < 100 * MS, `the video is ${(error / MS).toFixed(1)} ms off the phone's position`);
    assert.equal(s.lease, await page.eval("continuityApp.device.me.id"));
    await page.screenshot(join(shots, "web-tv-playing.png"));
    await axe(page, "now playing");
    await keyboardAndNames(page, "now playing");
  });

  await t.test("the phone stays paused: the web TV told it, the source, that it plays", async () => {
    assert.ok(transferred, "the transfer ran");
    // A source watches its target until 2 s past the switch instant and takes the session
    // back unless the target's result reaches it. Elapsed time is the point here: 3 s after
    // the transfer ended (which is after the switch), nothing may have moved.
    const left = transferred.at + 3000 - Date.now();
    if (left > 0) await new Promise((r) => setTimeout(r, left));
    const webId = await page.eval("continuityApp.device.me.id");
    const again = phone.lines.slice(transferred.lines).filter((l) => /\] (playing|the session moved to .*: now playing there)$/.test(l));
    assert.deepEqual(again, [], "the phone did not play again nor take the session back");
    const s = await page.eval(`(() => { const s = continuityApp.device.sessions.get("${phoneId}"); return { state: s.anchor.state, lease: s.lease.device }; })()`);
    assert.deepEqual(s, { state: "paused", lease: webId }, "the phone's session, paused, names the web TV");
    const here = await page.eval("({ lease: continuityApp.device.lease.device, paused: document.getElementById('video').paused })");
    assert.deepEqual(here, { lease: webId, paused: false }, "the web TV holds the session and plays");
  });

  await t.test("captions by language, from the files beside the media", async () => {
    await page.waitFor("!document.getElementById('captions').hidden", { what: "the captions control" });
    await page.eval("document.getElementById('play-pause').focus(); true");
    await arrowTo(page, "Captions off");
    await page.press("Enter");
    // Headless Chromium's language is en-US: the English track.
    await page.waitFor("document.getElementById('captions').textContent === 'Captions: English'", { what: "English captions on" });
    const cue = await page.waitFor("(() => { const t = [...document.getElementById('video').textTracks].find((t) => t.mode === 'showing'); return t?.activeCues?.length ? t.activeCues[0].text : null; })()", {
      what: "a caption shown",
    });
    assert.equal(cue, "English captions");
    const webId = await page.eval("continuityApp.device.me.id");
    await page.waitFor(`continuityApp.device.sessions.get("${webId}").subtitle?.language === "en"`, { what: "the session carries the captions' language" });
    await page.screenshot(join(shots, "web-tv-captions.png"));
    await axe(page, "captions");
  });

  await t.test("readable at 200 % zoom, and still for those who asked for reduced motion", async () => {
    // A 1280 × 720 screen at 200 %: the page gets 640 × 360 CSS pixels.
    await page.send("Emulation.setDeviceMetricsOverride", { width: 640, height: 360, deviceScaleFactor: 2, mobile: false });
    try {
      const fit = await page.eval("({ scroll: document.documentElement.scrollWidth, width: innerWidth })");
      assert.ok(fit.scroll <= fit.width, `nothing to scroll sideways at 200 %: ${fit.scroll} px of content in ${fit.width}`);
      const clipped = await page.eval(`[...document.querySelectorAll("button, h2, h3, p")].filter((e) => e.offsetParent && !e.closest(".visually-hidden") && e.scrollWidth > e.clientWidth + 1).map((e) => e.id || e.textContent.trim())`);
      assert.deepEqual(clipped, [], "text cut off at 200 %");
      await page.screenshot(join(shots, "web-tv-zoom-200.png"));
    } finally {
      await page.send("Emulation.clearDeviceMetricsOverride");
    }
    await page.send("Emulation.setEmulatedMedia", { features: [{ name: "prefers-reduced-motion", value: "reduce" }] });
    const moving = await page.eval(`[...document.querySelectorAll("*")].filter((e) => { const s = getComputedStyle(e); return s.transitionDuration.split(",").some((d) => parseFloat(d) > 0) || (s.animationName && s.animationName !== "none"); }).map((e) => e.tagName + "." + e.className + " " + getComputedStyle(e).transitionDuration + " " + getComputedStyle(e).animationName)`);
    assert.deepEqual(moving, [], "transitions or animations with prefers-reduced-motion: reduce");
    await page.send("Emulation.setEmulatedMedia", { features: [] });
  });

  await t.test("web TV → phone with its 'Continue on Phone' control, by keyboard", async () => {
    await page.eval("document.getElementById('play-pause').focus(); true");
    await arrowTo(page, "Continue on Phone");
    await page.press("Enter");
    await page.waitFor(`(() => { const s = continuityApp.device.sessions.get("${phoneId}"); return s && s.anchor.state === "playing" && s.lease.device === "${phoneId}" && document.getElementById("video").paused; })()`, {
      what: "the phone playing again and the web TV paused",
    });
    const s = await snapshot(page, phoneId);
    // The phone's new anchor, read at the instant the web TV paused, is where its picture
    // stopped.
    const phoneThere = s.other.position_ns + (s.own.at - s.other.at);
    const error = phoneThere - s.currentTime * 1e9;
    assert.ok(Math.abs(s.own.position_ns - s.currentTime * 1e9) < 1 * MS, "the web TV's anchor is where its video paused");
    say({ error_ms: error / MS, s });
    assert.ok(Math.abs(error) < 100 * MS, `the phone continues ${(error / MS).toFixed(1)} ms off where the web TV paused`);
    await page.waitFor("document.getElementById('announce').textContent.startsWith('Continued on Phone')", { what: "the announcement" });
    await page.waitFor("getComputedStyle(document.getElementById('now')).display === 'none'", { what: "the player put away" });
  });

  await t.test("the resume prompt appears for the media the phone stopped", async () => {
    phone.signal("SIGINT");
    await phone.done;
    const text = await page.waitFor("!document.getElementById('resume').hidden && document.getElementById('resume-text').textContent", {
      what: "the resume prompt",
    });
    assert.match(text, /^Resume “.*” at \d+:\d\d from Phone\?$/);
    await page.screenshot(join(shots, "web-tv-resume.png"));
    await axe(page, "resume prompt");
    await keyboardAndNames(page, "resume prompt");
  });

  await t.test("the web TV, whose session moved on, records no point, and offers none for a media that ended since", async () => {
    const d = "continuityApp.device";
    const prompt = "document.getElementById('resume').hidden ? null : document.getElementById('resume-text').textContent";
    const text = await page.waitFor(prompt, { what: "the resume prompt" });
    const mediaId = await page.eval(`${d}.sessions.get("${phoneId}").media.id`);
    const pointOf = `[...${d}.resume.values()].find((p) => p.media.id === ${JSON.stringify(mediaId)})`;
    assert.equal(await page.eval(`${pointOf}.device`), phoneId, "the newest point is the phone's");
    assert.equal(await page.eval(`${d}.lease.device`), phoneId, "the phone holds the session the web TV handed over");
    // What the web TV does when it stops (its page closes): it still has the position where
    // it paused at the switch, older than the phone's point. Only the holder records.
    await page.eval(`${d}.recordResume(continuityApp.player.positionNs).then(() => true)`);
    assert.equal(await page.eval(`${pointOf}.device`), phoneId, "the web TV recorded no point over the phone's");
    assert.equal(await page.eval(prompt), text, "the prompt still offers the phone's point");
    // The phone's session ends after that point (sealed as the phone, at the next counter the
    // web TV takes on that topic, not retained): the media finished there, nothing to resume.
    const topic = `continuity/v1/${ACCOUNT}/sessions/${phoneId}/state`;
    const last = JSON.parse(await page.eval(`(() => { const s = ${d}.sessions.get("${phoneId}");
      return JSON.stringify({ session: s.session, media: s.media, epoch: s.lease.epoch,
        counter: String(${d}.opener.seen.get("${phoneId}\\u0000${topic}")?.greatest() ?? 0n) }, (k, v) => (typeof v === "bigint" ? Number(v) : v)); })()`));
    const now = BigInt(Date.now()) * 1000000n;
    const ended = {
      v: 1,
      device: phoneId,
      session: last.session,
      stamp: { wall_ns: now, counter: 0, device: phoneId },
      media: last.media,
      anchor: { position_ns: last.media.duration_ns ?? 40e9, at_unix_ns: now, rate: 1, state: "ended" },
      queue: [],
      lease: { device: phoneId, epoch: last.epoch },
    };
    const env = await sealAs(join(work, "phone"), phoneId, topic, ended, BigInt(last.counter) + 1n);
    const r = spawnSync("mosquitto_pub", ["-h", "127.0.0.1", "-p", port, "-q", "1", "-t", topic, "-m", stringify(env)]);
    assert.equal(r.status, 0, `mosquitto_pub: ${r.stderr}`);
    await page.waitFor(`${d}.sessions.get("${phoneId}").anchor.state === "ended"`, { what: `the phone's ended session; the page said:\n${page.console.slice(-5).join("\n")}` });
    await page.waitFor("document.getElementById('resume').hidden", { what: "the prompt gone: the media finished on the phone" });
  });

  await t.test("row 12: an Ogg Theora film is refused with unsupported-media, and the phone plays on", async () => {
    // The transfer is asked from a remote, a device of its own: the phone's own helpers seal
    // as the phone with counters from now, below those of its player, which restarts here
    // within a minute of its last start and so counts from the floor it reserved a minute
    // ahead; the web TV (as any device) would refuse them on its inbox as replays.
    const host = start(bin, cli("phone", "pair", "--yes", "--no-advertise", "--device-name", "Phone", "--timeout", "30"), "pair-remote");
    await host.waitLine(/pair --join/);
    const joiner = start(bin, cli("remote", "pair", "--join", "--yes", "--device-name", "Remote", "--timeout", "30"), "join-remote");
    assert.equal(await joiner.done, 0, `the remote did not join:\n${joiner.lines.join("\n")}`);
    assert.equal(await host.done, 0);
    const remoteId = readFileSync(join(work, "remote", "device-id"), "utf8").trim();
    await page.waitFor(`continuityApp.device.membership.roster.devices.some((d) => d.device === "${remoteId}")`, { what: "the remote in the web TV's roster" });
    const film = `${web}media/film.ogg`;
    const phone = start(bin, cli("phone", "play", "--no-advertise", film, "--device-name", "Phone", "--device-class", "phone"), "phone-ogg");
    try {
      await phone.waitLine(/\] playing$/, 20000);
      const decoders = (await phone.waitLine(/\] decoders: (.*)$/))[1];
      assert.match(decoders, /theoradec/, "the phone shows the film's Theora video");
      const phoneState = `continuityApp.device.sessions.get("${phoneId}")`;
      await page.waitFor(`(() => { const s = ${phoneState}; return s?.anchor?.state === "playing" && s.lease.device === "${phoneId}" && s.media.uri === "${film}"; })()`, {
        what: "the phone playing the film, as the web TV sees it",
      });
      const said = phone.lines.length;
      const tr = start(bin, cli("remote", "transfer", "--to", "Web TV", "--json"), "transfer-ogg");
      const code = await tr.done;
      const result = transferJson(tr.lines);
      say(result);
      assert.equal(result.failure, "unsupported-media", `the result: ${JSON.stringify(result)}; the page said:\n${page.console.slice(-5).join("\n")}`);
      assert.notEqual(code, 0, "a failed transfer ends with an error");
      const src = await page.eval("document.getElementById('video').currentSrc");
      assert.notEqual(src, film, "the web TV did not load the film");
      await page.waitFor("document.getElementById('announce').textContent.includes('cannot play this kind of media')", { what: "the web TV saying why" });
      // The phone plays on: a second more of the film, with no pause on the way.
      const from = await page.eval(`Number(continuityApp.device.livePosition(${phoneState}))`);
      await page.waitFor(`(() => { const s = ${phoneState}; return s.anchor.state === "playing" && Number(continuityApp.device.livePosition(s)) > ${from + 1e9}; })()`, {
        what: "the phone a second further",
      });
      const s = await page.eval(`(() => { const s = ${phoneState}; return { state: s.anchor.state, lease: s.lease.device, uri: s.media.uri }; })()`);
      assert.deepEqual(s, { state: "playing", lease: phoneId, uri: film }, "the phone's session");
      const paused = phone.lines.slice(said).filter((l) => /\] (paused|handoff|the session moved)/.test(l));
      assert.deepEqual(paused, [], "the phone never paused nor handed off");
      assert.equal(await page.eval(`!!document.getElementById("here-${phoneId}")`), false, "no 'Continue here' for a film this TV cannot show");
    } finally {
      phone.signal("SIGINT");
      await phone.done;
    }
  });

  await t.test("a tablet 30 s ahead: read with the measured offset, and pulled with 'Continue here'", async () => {
    const host = start(bin, cli("phone", "pair", "--yes", "--no-advertise", "--device-name", "Phone", "--timeout", "30"), "pair2");
    await host.waitLine(/pair --join/);
    const joiner = start(bin, cli("tablet", "pair", "--join", "--yes", "--device-name", "Tablet", "--timeout", "30"), "join");
    assert.equal(await joiner.done, 0, `the tablet did not join:\n${joiner.lines.join("\n")}`);
    assert.equal(await host.done, 0);
    const tabletId = readFileSync(join(work, "tablet", "device-id"), "utf8").trim();
    await page.waitFor(`continuityApp.device.membership.roster.devices.some((d) => d.device === "${tabletId}")`, { what: "the tablet in the web TV's roster" });
    // Its wall clock 30 s ahead; GStreamer's and tokio's monotonic clocks untouched.
    const tablet = spawnSkewed("+30s", cli("tablet", "play", "--no-advertise", uri, "--device-name", "Tablet", "--device-class", "tablet"), "tablet");
    try {
      await tablet.waitLine(/\] playing$/, 20000);
      await page.waitFor(`!!document.getElementById("here-${tabletId}")`, { what: "the tablet's session" });
      // Three probes when it came online, the smallest round trip kept.
      const offset = await page.waitFor(`(() => { const c = continuityApp.device.clocks.get("${tabletId}"); return c?.samples >= 3 && Number(c.offset); })()`, { what: "three answers from the tablet's clock" });
      assert.ok(Math.abs(offset - 30e9) < 5 * MS, `measured offset ${(offset / 1e9).toFixed(4)} s, the truth 30 s`);
      // The card's time is the tablet's anchor read with the tablet's clock.
      const shown = await page.eval(`(() => { const d = continuityApp.device, s = d.sessions.get("${tabletId}");
        return { live: Number(d.livePosition(s)), truth: Number(s.anchor.position_ns) + ((Date.now() - performance.now() + performance.now()) * 1e6 + 30e9 - Number(s.anchor.at_unix_ns)) };
      })()`);
      assert.ok(Math.abs(shown.live - shown.truth) < 100 * MS, `the card is ${((shown.live - shown.truth) / MS).toFixed(1)} ms off`);
      await page.eval(`document.getElementById("here-${tabletId}").focus(); true`);
      await page.press("Enter");
      await page.waitFor(`(() => { const s = continuityApp.device.sessions.get("${tabletId}"); return s && s.anchor.state === "paused" && s.lease.device === continuityApp.device.me.id && !document.getElementById("video").paused; })()`, {
        what: "the tablet paused and the web TV playing its session",
      });
      await page.waitFor(`(() => { const s = continuityApp.device.sessions.get("${tabletId}"); return document.getElementById("video").currentTime * 1e9 > Number(s.anchor.position_ns) + 300e6; })()`, { what: "0.3 s played" });
      const s = await snapshot(page, tabletId);
      const expected = s.other.position_ns + (s.now + 30e9 - s.other.at);
      const error = s.currentTime * 1e9 - expected;
      say({ error_ms: error / MS, s });
      assert.ok(Math.abs(error) < 100 * MS, `the video is ${(error / MS).toFixed(1)} ms off where the tablet stopped`);
      await page.waitFor("document.getElementById('announce').textContent.startsWith('Continued from Tablet')", { what: "the announcement" });
    } finally {
      // Stopped even when a check above failed: the next subtests start a player on its config dir.
      tablet.signal("SIGINT");
      await tablet.done;
    }
  });

  await t.test("the phone switched on while the web TV plays is suggested, and one key continues there", async () => {
    const phone = start(bin, cli("phone", "play", "--no-advertise", "--device-name", "Phone", "--device-class", "phone"), "phone-again");
    try {
      await phone.waitLine(/\] connected$/, 20000);
      const text = await page.waitFor("!document.getElementById('suggest').hidden && document.getElementById('suggest-text').textContent", { what: "the suggestion" });
      assert.equal(text, "Phone is on: continue there?");
      await page.waitFor("document.getElementById('announce').textContent === 'Phone is on: continue there?'", { what: "the suggestion said" });
      assert.equal((await page.focused()).id, "suggest-yes", "one key continues there");
      assert.equal(await page.eval("document.getElementById('video').paused"), false, "nothing happens by itself");
      await page.screenshot(join(shots, "web-tv-suggestion.png"));
      await axe(page, "suggestion");
      await keyboardAndNames(page, "suggestion");
      await page.eval("document.getElementById('suggest-yes').focus(); true");
      await page.press("Enter");
      await phone.waitLine(/handoff complete/, 20000);
      await page.waitFor("document.getElementById('video').paused && document.getElementById('suggest').hidden", { what: "the web TV paused, the suggestion gone" });
    } finally {
      phone.signal("SIGINT");
      await phone.done;
    }
  });

  await t.test("a web TV source that hears nothing from its target for 2 s past the switch keeps the session", async () => {
    const d = "continuityApp.device";
    const webId = await page.eval(`${d}.me.id`);
    const player = start(bin, cli("phone", "play", "--no-advertise", uri, "--device-name", "Phone", "--device-class", "phone"), "phone-watched");
    /** A line of `player` like `re` said after its `from`th line, within `ms`. */
    const saidSince = async (from, re, what, ms = 10000) => {
      const said = await player.waitLine(re, ms, from).catch(() => null);
      assert.ok(said, `the phone said nothing like ${re} (${what}); it said:\n${player.lines.slice(from).join("\n")}`);
      return said.input;
    };
    try {
      await player.waitLine(/\] playing$/, 20000);
      const phoneState = `${d}.sessions.get("${phoneId}")`;
      await page.waitFor(`(() => { const s = ${phoneState}; return s?.anchor?.state === "playing" && s.lease.device === "${phoneId}" && ${d}.availability.get("${phoneId}") === "online"; })()`, {
        what: "the phone playing, as the web TV sees it",
      });
      const pulled = await page.eval(`${d}.requestHandoff(${d}.me.id, "${phoneId}").then((r) => r.failure ?? "ok")`);
      assert.equal(pulled, "ok", "the web TV took the phone's session over");
      // The phone's result of the handoff back is lost on its way (as when a broker restarts):
      // the web TV, its source, hears nothing from its target.
      await page.eval(`(${d}.onResult = () => {}, true)`);
      const from = player.lines.length;
      page.eval(`${d}.requestHandoff("${phoneId}", ${d}.me.id).then(() => true)`).catch(() => {});
      await saidSince(from, /\] handoff complete/, "the handoff back");
      const epoch = await page.eval(`Number(${phoneState}.lease.epoch)`);
      // 2 s past the switch instant, the web TV plays on, at the next epoch.
      await page.waitFor(`${d}.lease.device === "${webId}" && Number(${d}.lease.epoch) > ${epoch} && !document.getElementById("video").paused`, {
        what: `the web TV playing on with the session; the page said:\n${page.console.slice(-5).join("\n")}`,
      });
      await saidSince(from, /\] the session moved to Web TV: now playing there$/, "the web TV kept the session");
      await page.waitFor(`(() => { const s = ${phoneState}; return s.anchor.state === "paused" && s.lease.device === "${webId}"; })()`, { what: "the phone paused, its session naming the web TV" });
    } finally {
      await page.eval(`(delete ${d}.onResult, true)`);
      player.signal("SIGINT");
      await player.done;
    }
  });

  await t.test("the web TV asks for what its broker lacks, and answers a device whose broker lacks it", async () => {
    const webId = await page.eval("continuityApp.device.me.id");
    const askTopic = `continuity/v1/${ACCOUNT}/ask`;
    const senderOf = (line) => JSON.parse(line.slice(line.indexOf("\t") + 1)).sealed?.sender;
    const asks = spy.lines.filter((l) => l.startsWith(`${askTopic}\t`));
    assert.ok(asks.some((l) => senderOf(l) === webId), `the web TV asked once synced; asks seen from ${asks.map(senderOf)}`);
    // The phone asks as a device whose broker held nothing would (sealed and signed with its
    // keys, from its config dir): the web TV publishes its retained state again.
    const ask = { v: 1, device: phoneId, seen: [] };
    // A counter above the phone's own: after each restart a device's counters start at the
    // floor it reserved (up to a minute ahead of its clock, a minute more at each restart of
    // the phone's players here), and receivers refuse older ones.
    const took = BigInt(await page.eval(`String(continuityApp.device.opener.seen.get("${phoneId}\\u0000${askTopic}")?.greatest() ?? 0n)`));
    const counter = [BigInt(Date.now() + 120000) * 1000n, took + 1n].reduce((a, b) => (a > b ? a : b));
    const env = await sealAs(join(work, "phone"), phoneId, askTopic, ask, counter);
    const own = (kind) => (l) => l.startsWith(`continuity/v1/${ACCOUNT}/${kind === "state" ? "sessions" : "devices"}/${webId}/${kind}\t`);
    const kinds = ["availability", "info", "state"];
    const from = spy.lines.length;
    const r = spawnSync("mosquitto_pub", ["-h", "127.0.0.1", "-p", port, "-q", "1", "-t", askTopic, "-m", stringify(env)]);
    assert.equal(r.status, 0, `mosquitto_pub: ${r.stderr}`);
    const again = await Promise.all(kinds.map((k) => spy.waitLine(own(k), 10000, from).catch(() => null)));
    assert.ok(
      again.every(Boolean),
      `the web TV's availability, info and session published again: ${kinds.filter((_, i) => !again[i])} not; the page said:\n${page.console.slice(-10).join("\n")}`,
    );
  });

  await t.test("alone with the broker, the web TV puts back the newest resume point when it is cleared or replayed", async () => {
    // Every player has stopped: what comes back, only the web TV sent.
    const resumeLines = spy.lines.filter((l) => /^continuity\/v1\/[^/]+\/media\/[0-9a-f]{32}\/resume\t./.test(l));
    assert.ok(resumeLines.length > 0, "resume points were published");
    const topic = resumeLines.at(-1).split("\t")[0];
    const points = resumeLines.filter((l) => l.startsWith(`${topic}\t`)).map((l) => l.slice(topic.length + 1));
    const newest = points.at(-1);
    const older = points.findLast((p) => p !== newest);
    say(`resume topic ${topic}: ${points.length} points, an older one: ${older !== undefined}`);
    // A deadline that only bounds a failure: a TV repairs a topic 0.1–0.4 s after it was hit,
    // but one hit again and again within a minute 1 s, 2 s… at most 30 s after its previous
    // repair (so that two devices never fight over it), and this subtest follows others that
    // repaired. The order of clears, asks and replays is tested on a fake clock in
    // device.test.js.
    const back = async (what) => {
      const from = spy.lines.length;
      const restored = await spy.waitLine((l) => l === `${topic}\t${newest}`, 35000, from).catch(() => null);
      assert.ok(restored, `the newest point is back on the broker after ${what}; the page said:\n${page.console.slice(-5).join("\n")}`);
    };
    const cleared = back("a clear");
    assert.equal(spawnSync("mosquitto_pub", ["-h", "127.0.0.1", "-p", port, "-r", "-n", "-t", topic]).status, 0);
    await cleared;
    if (older !== undefined) {
      const replayed = back("a replay of an older point");
      assert.equal(spawnSync("mosquitto_pub", ["-h", "127.0.0.1", "-p", port, "-r", "-t", topic, "-m", older]).status, 0);
      await replayed;
    }
  });

  await t.test("issue 25: a film handed phone → TV → web TV → phone, with its end in between", async () => {
    const d = "continuityApp.device";
    const video = 'document.getElementById("video")';
    const webId = await page.eval(`${d}.me.id`);
    // 8 s: long enough for two handoffs and the checks between them, short enough to end.
    const seconds = 8;
    clip(join(media, "journey-clip.webm"), seconds);
    const film = `${web}media/journey-clip.webm`;
    // A Rust TV, paired through the phone like the tablet. `transfer` and `sessions` run as
    // the TV, as someone at the TV would: its player starts once here, so its counters and
    // its helpers' both follow the clock (row 12 says why a device whose player restarted
    // within a minute cannot). Not as the remote, nor a device paired after the TV: either
    // one misses the other's pairing, and the roster the broker keeps is the one the last
    // device to join published, signed with a key the other has never seen, so that one
    // refuses it (and with it the other's info and commands).
    const joinAccount = async (dir, name) => {
      const host = start(bin, cli("phone", "pair", "--yes", "--no-advertise", "--device-name", "Phone", "--timeout", "30"), `pair-${dir}`);
      await host.waitLine(/pair --join/);
      const joiner = start(bin, cli(dir, "pair", "--join", "--yes", "--device-name", name, "--timeout", "30"), `join-${dir}`);
      assert.equal(await joiner.done, 0, `${name} did not join:\n${joiner.lines.join("\n")}`);
      assert.equal(await host.done, 0);
      const id = readFileSync(join(work, dir, "device-id"), "utf8").trim();
      await page.waitFor(`${d}.membership.roster.devices.some((x) => x.device === "${id}")`, { what: `${name} in the web TV's roster` });
      return id;
    };
    const tvId = await joinAccount("tv", "TV");

    /** A line of `p` like `re` said after its `from`th line, within `ms`. */
    const saidSince = async (p, from, re, what, ms = 10000) => {
      const said = await p.waitLine(re, ms, from).catch(() => null);
      assert.ok(said, `${p.name} said nothing like ${re} (${what}); it said:\n${p.lines.slice(from).join("\n")}`);
      return said.input;
    };
    const brief = (doc) => doc.sessions.map((s) => `${s.device_name}: ${s.state} ${s.media?.uri ?? "-"} at ${s.position_s} s, held by ${s.lease?.device}${s.online ? "" : " (offline)"}`).join("\n");
    /** `sessions --json` as the TV, again until `ok(doc)` (what the players published
     *  reaches the broker a moment after they say it), for at most `ms`. */
    const sessionsUntil = (ok, what, ms = 10000) =>
      sessionsWhen("tv", ok, (doc) => `sessions --json never showed ${what}; it showed:\n${doc ? brief(doc) : "nothing"}`, ms);
    const of = (doc, id) => doc.sessions.find((s) => s.device === id);
    const playingIn = (doc) => doc.sessions.filter((s) => s.state === "playing").map((s) => s.device);
    const transfer = async (to) => {
      const r = await run(cli("tv", "transfer", "--to", to, "--json"), `transfer to ${to}`);
      return { ...r, result: r.stdout.trim() ? JSON.parse(r.stdout) : null };
    };

    // What the web TV played in the subtests before (if it has not ended) pauses: only the
    // journey's film is to play anywhere.
    await page.eval(`(${video}.paused || document.getElementById("play-pause").click(), true)`);
    await page.waitFor(`${video}.paused && ${d}.anchor?.state !== "playing"`, { what: "the web TV paused" });

    const tv = start(bin, cli("tv", "play", "--no-advertise", "--device-name", "TV", "--device-class", "tv"), "tv");
    const phone = start(bin, cli("phone", "play", "--no-advertise", film, "--device-name", "Phone", "--device-class", "phone"), "phone-journey");
    let again = null;
    try {
      // 1. The phone plays the film; the TV waits for a handoff.
      await tv.waitLine(/\] idle: waiting for a handoff$/, 20000);
      await tv.waitLine(/\] connected$/, 20000);
      await phone.waitLine(/\] playing$/, 20000);
      await page.waitFor(`${d}.availability.get("${tvId}") === "online"`, { what: "the TV online, as the web TV sees it" });

      // 2. Phone → TV.
      let from = { phone: phone.lines.length, tv: tv.lines.length };
      let tr = await transfer("TV");
      assert.equal(tr.code, 0, `transfer --to TV failed:\n${tr.stdout}${tr.stderr}`);
      assert.equal(tr.result.ok, true, `the result: ${tr.stdout}`);
      assert.equal(tr.result.target, tvId);
      await saidSince(tv, from.tv, /\] handoff complete/, "the handoff from the phone");
      await saidSince(phone, from.phone, /\] paused( at frame .*)?$/, "the phone pausing at the switch");
      let doc = await sessionsUntil(
        (doc) => playingIn(doc).join() === tvId && of(doc, tvId)?.lease.device === tvId && of(doc, phoneId)?.state === "paused",
        "only the TV playing, holding the session, and the phone paused",
      );
      assert.equal(of(doc, tvId).media.uri, film, "the TV plays the film");
      assert.equal(of(doc, phoneId).lease.device, tvId, "the phone's session names the TV");

      // 3. TV → web TV.
      from = { phone: phone.lines.length, tv: tv.lines.length };
      tr = await transfer("Web TV");
      assert.equal(tr.code, 0, `transfer --to "Web TV" failed:\n${tr.stdout}${tr.stderr}; the page said:\n${page.console.slice(-5).join("\n")}`);
      assert.equal(tr.result.ok, true, `the result: ${tr.stdout}`);
      assert.equal(tr.result.source, tvId);
      await page.waitFor(`(() => { const s = ${d}.sessions.get("${tvId}"); return s?.anchor?.state === "paused" && s.lease.device === "${webId}" && ${d}.media?.uri === "${film}" && !${video}.paused; })()`, {
        what: "the TV paused and the web TV playing the film",
      });
      await saidSince(tv, from.tv, /\] paused( at frame .*)?$/, "the TV pausing at the switch");
      // Measured after half a second of playing, not only at the switch.
      await page.waitFor(`${video}.currentTime * 1e9 > Number(${d}.sessions.get("${tvId}").anchor.position_ns) + 500e6`, { what: "half a second played" });
      const s = await snapshot(page, tvId);
      // Same host, same clock: where the TV stopped plus the time since is where the web TV is.
      const error = s.currentTime * 1e9 - (s.other.position_ns + (s.now - s.other.at));
      say({ error_ms: error / MS, s });
      assert.ok(Math.abs(error) < 100 * MS, `the video is ${(error / MS).toFixed(1)} ms off the TV's position`);
      doc = await sessionsUntil(
        (doc) => playingIn(doc).join() === webId && of(doc, webId)?.lease.device === webId && of(doc, tvId)?.state === "paused",
        "only the web TV playing, holding the session, and the TV paused",
      );
      assert.equal(of(doc, webId).media.uri, film, "the web TV plays the film");
      assert.equal(of(doc, tvId).lease.device, webId, "the TV's session names the web TV");

      // 4. The web TV plays the film to its end.
      await page.waitFor(`${video}.ended && ${d}.anchor?.state === "ended"`, { what: "the film's end on the web TV", timeout: (seconds + 10) * 1000 });
      doc = await sessionsUntil((doc) => of(doc, webId)?.state === "ended", "the web TV's session ended");
      assert.deepEqual(playingIn(doc), [], "nothing plays anywhere");
      assert.equal(of(doc, webId).lease.device, webId, "the web TV holds the ended session");
      assert.ok(of(doc, webId).position_s > seconds - 1, `the web TV ended at ${of(doc, webId).position_s} s, the film is ${seconds} s`);

      // 5. Nothing to move: the transfer says so, and the phone does not start.
      from = { phone: phone.lines.length, tv: tv.lines.length };
      tr = await transfer("Phone");
      assert.notEqual(tr.code, 0, `transfer --to Phone of an ended session succeeded:\n${tr.stdout}${tr.stderr}`);
      assert.match(tr.stderr, /nothing plays on Web TV/, "why the transfer failed");
      // Had it asked the phone, it would have waited for the phone's answer before exiting:
      // the phone would have said so by now.
      const moved = phone.lines.slice(from.phone).filter((l) => /\] (handoff incoming|playing|resumed at)/.test(l));
      assert.deepEqual(moved, [], "nothing started on the phone");
      doc = await sessionsJson("tv");
      assert.deepEqual(playingIn(doc), [], `nothing plays anywhere:\n${brief(doc)}`);
      assert.equal(of(doc, phoneId).state, "paused", "the phone's session is still paused");

      // 6. The phone starts the film again, from its beginning: nothing offers to resume it.
      phone.signal("SIGINT");
      await phone.done;
      await page.waitFor(`${d}.availability.get("${phoneId}") === "offline"`, { what: "the phone offline, as the web TV sees it" });
      const mediaId = of(doc, webId).media.id;
      const noResume = `(() => { const p = ${d}.pointOf(${JSON.stringify(mediaId)}); return ${d}.resumeFrom(${JSON.stringify(mediaId)}, p ?? null) === null; })()`;
      assert.equal(await page.eval(noResume), true, "the web TV has nothing to resume of the film");
      const title = of(doc, webId).title;
      const prompt = () => page.eval("document.getElementById('resume').hidden ? null : document.getElementById('resume-text').textContent");
      assert.ok(!(await prompt())?.includes(title), `the web TV offers to resume the film: ${await prompt()}`);
      again = start(bin, cli("phone", "play", "--no-advertise", film, "--device-name", "Phone", "--device-class", "phone"), "phone-again-journey");
      await again.waitLine(/\] playing$/, 20000);
      doc = await sessionsUntil((doc) => of(doc, phoneId)?.state === "playing" && of(doc, phoneId)?.media?.uri === film, "the phone playing the film again");
      const p = of(doc, phoneId);
      assert.ok(p.position_s < 3, `the phone started at ${p.position_s} s, not at the beginning`);
      assert.equal(p.lease.device, phoneId, "the phone holds its session");
      assert.deepEqual(again.lines.filter((l) => /\] resumed at/.test(l)), [], "the phone resumed nothing");
      assert.ok(!(await prompt())?.includes(title), `the web TV offers to resume the film: ${await prompt()}`);
    } finally {
      for (const p of [again, phone, tv]) {
        if (!p) continue;
        p.signal("SIGINT");
        await p.done;
      }
    }
  });

  await t.test("a spy on the broker sees only sealed payloads from the web TV", async () => {
    const webId = await page.eval("continuityApp.device.me.id");
    // The broker delivers in order: once the spy has the marker, it has all before it.
    await spySees(spy, port, "end");
    spy.signal("SIGTERM");
    let sealedFromWeb = 0;
    const plain = [];
    for (const line of spy.lines) {
      const [topic, payload = ""] = line.split("\t");
      if (!payload || topic === MARKER || topic.endsWith("/availability") || topic.includes("/pairing/")) continue;
      const v = JSON.parse(payload);
      if (!v.sealed) plain.push(topic);
      else if (v.sealed.sender === webId) sealedFromWeb++;
    }
    assert.deepEqual(plain, [], "plain payloads on the broker");
    assert.ok(sealedFromWeb > 10, `sealed payloads from the web TV: ${sealedFromWeb}`);
    const leaked = spy.lines.filter((l) => l.includes("clip.webm") || l.includes("film.ogg"));
    assert.deepEqual(leaked, [], "the media's URI in clear");
  });
});

test.after(async () => {
  for (const p of procs) p.signal("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});
