// The web TV's player: an HTML <video> element driven as the element drives its pipeline in
// a handoff: load and preroll at a position, start or pause at an instant of the wall
// clock, and tell when the first frame was shown and from where.

import { nowNs } from "./mqtt.js";

const NS = 1e9;

/** Wait for one of `events` on `el` (rejects on `error`, or after `ms`). */
function once(el, events, ms = 10000) {
  return new Promise((resolve, reject) => {
    const done = (f) => (ev) => {
      clearTimeout(timer);
      for (const e of [...events, "error"]) el.removeEventListener(e, handlers[e]);
      f(ev);
    };
    const handlers = {};
    for (const e of events) handlers[e] = done(resolve);
    handlers.error = done(() => reject(new Error(mediaError(el))));
    for (const e of [...events, "error"]) el.addEventListener(e, handlers[e]);
    const timer = setTimeout(done(() => reject(new Error(`no ${events.join(" or ")} within ${ms} ms`))), ms);
  });
}

function mediaError(el) {
  const e = el.error;
  if (!e) return "the media failed";
  const what = { 1: "aborted", 2: "network error", 3: "cannot decode", 4: "format not supported" }[e.code] ?? "failed";
  return `the media ${what}${e.message ? `: ${e.message}` : ""}`;
}

/** Sleep until the wall-clock instant `atNs` (BigInt), to within a millisecond. */
async function until(atNs) {
  const ms = Number(atNs - nowNs()) / 1e6;
  if (ms > 3) await new Promise((r) => setTimeout(r, ms - 3));
  while (nowNs() < atNs) await Promise.resolve();
}

export class Player {
  constructor(video) {
    this.video = video;
    this.uri = null;
    this.generation = 0;
    this.startLagNs = BigInt(localStorage.getItem("start-lag-ns") ?? "80000000");
  }

  get positionNs() {
    return BigInt(Math.round(this.video.currentTime * NS));
  }

  get durationNs() {
    const d = this.video.duration;
    return Number.isFinite(d) ? BigInt(Math.round(d * NS)) : null;
  }

  get playing() {
    return !this.video.paused && !this.video.ended;
  }

  /** Load `uri` (unless it is loaded) and preroll at `positionNs`; resolves with the position. */
  async load(uri, positionNs) {
    const v = this.video;
    const gen = ++this.generation;
    if (this.uri !== uri) {
      this.uri = uri;
      v.pause();
      v.src = uri;
      v.load();
      await once(v, ["loadedmetadata"]);
    }
    if (gen !== this.generation) throw new Error("superseded by another load");
    return this.preroll(positionNs);
  }

  /** Seek (paused) to `positionNs` and wait until a frame there is ready to show. */
  async preroll(positionNs) {
    const v = this.video;
    if (!v.paused) v.pause();
    const target = Number(positionNs) / NS;
    if (Math.abs(v.currentTime - target) > 0.0005) {
      const seeked = once(v, ["seeked"]);
      v.currentTime = target;
      await seeked;
    }
    if (v.readyState < HTMLMediaElement.HAVE_FUTURE_DATA) await once(v, ["canplay"]);
    return this.positionNs;
  }

  /**
   * Play from where it is prerolled at `atNs`. Resolves with the first frame shown:
   * `{shownNs, positionNs}`: the wall clock when it was shown, and the media clock then.
   */
  async playAt(atNs) {
    // play() takes a while to start the media clock: start that much early, so that the
    // clock runs from the prerolled position at the instant. The lag is learned from each
    // start: when, judged by the media clock, playback really began.
    const from = this.positionNs;
    await until(atNs - this.startLagNs);
    const called = nowNs();
    const first = this.firstFrame();
    await this.play();
    const shown = await first;
    const began = shown.shownNs - (shown.positionNs - from);
    const lag = began - called;
    this.lastStart = { atNs, calledNs: called, beganNs: began, shownNs: shown.shownNs, positionNs: shown.positionNs, lagNs: lag };
    if (lag > 0n && lag < 500000000n) {
      this.startLagNs = (this.startLagNs + lag) / 2n;
      localStorage.setItem("start-lag-ns", String(this.startLagNs));
    }
    return shown;
  }

  async play() {
    const v = this.video;
    try {
      await v.play();
    } catch (e) {
      if (e.name !== "NotAllowedError") throw e;
      // The browser allows sound only after a key press; start muted meanwhile.
      v.muted = true;
      await v.play();
      this.onMutedByPolicy?.();
    }
  }

  /** The first frame shown from now on: the wall clock then, and the media clock. */
  firstFrame() {
    const v = this.video;
    return new Promise((resolve) => {
      let settled = false;
      const settle = () => {
        if (!settled) {
          settled = true;
          resolve({ shownNs: nowNs(), positionNs: this.positionNs });
        }
      };
      v.requestVideoFrameCallback?.(settle);
      // Audio, or a browser without frame callbacks: when playback reports it started.
      v.addEventListener("playing", () => setTimeout(settle, 100), { once: true });
    });
  }

  async pauseAt(atNs) {
    await until(atNs);
    this.video.pause();
  }

  pause() {
    this.video.pause();
  }

  async seek(positionNs) {
    const seeked = once(this.video, ["seeked"]);
    this.video.currentTime = Number(positionNs) / NS;
    await seeked;
  }

  unload() {
    this.generation++;
    this.uri = null;
    this.video.pause();
    this.video.removeAttribute("src");
    this.video.load();
  }
}
