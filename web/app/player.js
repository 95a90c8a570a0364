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

/** Media types by file extension, for a media whose bytes say nothing more. */
const TYPES = {
  webm: "video/webm",
  mkv: "video/x-matroska",
  mka: "audio/x-matroska",
  mp4: "video/mp4",
  m4v: "video/mp4",
  m4a: "audio/mp4",
  mov: "video/quicktime",
  avi: "video/x-msvideo",
  "3gp": "video/3gpp",
  ts: "video/mp2t",
  mp3: "audio/mpeg",
  aac: "audio/aac",
  flac: "audio/flac",
  wav: "audio/wav",
  ogv: "video/ogg",
  ogg: "audio/ogg",
  oga: "audio/ogg",
  opus: "audio/ogg",
  spx: "audio/ogg",
};
/** Extensions of files that have a picture (their audio-only kin have their own extension). */
const VIDEO_EXTS = new Set(["ogv", "mkv", "mp4", "m4v", "mov", "avi", "3gp"]);
/** Ogg's streams by the start of their first packet: [bytes, codec name, is video]. */
const OGG_CODECS = [
  ["\x80theora", "theora", true],
  ["\x80daala", "daala", true],
  ["OVP80", "vp8", true],
  ["BBCD\x00", "dirac", true],
  ["\x01vorbis", "vorbis", false],
  ["OpusHead", "opus", false],
  ["\x7fFLAC", "flac", false],
  ["Speex   ", "speex", false],
];
/** How much of a media is read to learn its streams (an Ogg file starts with all of them). */
const SNIFF_BYTES = 65536;

/** The extension of a URI's path, lower case ("" if none). */
function extension(uri) {
  const name = uri.split(/[?#]/)[0].split("/").pop() ?? "";
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
}

/**
 * The streams of an Ogg file from its first bytes (every stream begins on a page of its own
 * before any data: RFC 3533): `[{codec, video}]`, or null if these are not Ogg pages.
 */
export function oggStreams(bytes) {
  const streams = [];
  let at = 0;
  const text = (from, n) => String.fromCharCode(...bytes.subarray(from, from + n));
  while (at + 27 <= bytes.length && text(at, 4) === "OggS") {
    const bos = (bytes[at + 5] & 0x02) !== 0;
    const segments = bytes[at + 26];
    const body = at + 27 + segments;
    let size = 0;
    for (let i = 0; i < segments; i++) size += bytes[at + 27 + i];
    if (!bos) break;
    if (body + 8 > bytes.length) break;
    const known = OGG_CODECS.find(([magic]) => text(body, magic.length) === magic);
    streams.push(known ? { codec: known[1], video: known[2] } : { codec: null, video: false });
    at = body + size;
  }
  return at === 0 ? null : streams;
}

/**
 * The first bytes of `uri` (a range request; a server that sends the whole file is read no
 * further) and its Content-Type: `{data, type}`.
 */
async function firstBytes(uri) {
  const r = await fetch(uri, { headers: { Range: `bytes=0-${SNIFF_BYTES - 1}` }, signal: AbortSignal.timeout(1500) });
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  const data = new Uint8Array(SNIFF_BYTES);
  let size = 0;
  const reader = r.body.getReader();
  try {
    while (size < SNIFF_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, SNIFF_BYTES - size);
      data.set(value.subarray(0, take), size);
      size += take;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return { data: data.subarray(0, size), type: r.headers.get("content-type") };
}

/** Sleep until the wall-clock instant `atNs` (BigInt), to within a millisecond (or until `off()`). */
async function until(atNs, off = () => false) {
  const ms = Number(atNs - nowNs()) / 1e6;
  if (ms > 3) await new Promise((r) => setTimeout(r, ms - 3));
  while (nowNs() < atNs && !off()) await Promise.resolve();
}

export class Player {
  constructor(video) {
    this.video = video;
    this.uri = null;
    this.generation = 0;
    this.startLagNs = BigInt(localStorage.getItem("start-lag-ns") ?? "80000000");
    /** What `support` learnt, per URI: `{promise, value}`. */
    this.supports = new Map();
    /** A pause at an instant still to come (`pauseAt`). */
    this.due = null;
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

  /** The playback rate. */
  get rate() {
    return this.video.playbackRate;
  }

  /** Play at `rate` from now on, when the browser can (a positive rate up to 16). */
  setRate(rate) {
    if (Number.isFinite(rate) && rate > 0 && rate <= 16 && this.video.playbackRate !== rate) this.video.playbackRate = rate;
  }

  /** Whether the loaded media shows a picture (0 × 0: audio only, or a video it cannot decode). */
  get showsVideo() {
    return this.video.videoWidth > 0 && this.video.videoHeight > 0;
  }

  /**
   * Whether this browser can play `uri`, as far as it can tell before loading it:
   * `{ok, type, video}`: the media type asked of `canPlayType` (with the codecs when the
   * bytes name them: an Ogg file's streams), `ok` false when the browser says "" to it, and
   * `video` true when the media has a picture (false: none, null: unknown). A media it
   * cannot read (another origin without CORS, a network error) is taken as playable: the
   * load says more. Cached per URI.
   */
  support(uri) {
    let known = this.supports.get(uri);
    if (!known) {
      known = { value: undefined };
      known.promise = this.probe(uri)
        .catch(() => {
          // Asked again next time: the server may answer then.
          if (this.supports.get(uri) === known) this.supports.delete(uri);
          return { ok: true, type: null, video: VIDEO_EXTS.has(extension(uri)) || null };
        })
        .then((v) => (known.value = v));
      this.supports.set(uri, known);
      if (this.supports.size > 64) this.supports.delete(this.supports.keys().next().value);
    }
    return known.promise;
  }

  /** What `support` already knows of `uri` (undefined while it is looking, or never asked). */
  supportKnown(uri) {
    return this.supports.get(uri)?.value;
  }

  async probe(uri) {
    const ext = extension(uri);
    const byType = (type, video) => ({ ok: !type || this.video.canPlayType(type) !== "", type: type ?? null, video });
    const ogg = TYPES[ext]?.endsWith("/ogg");
    // A known type that is not Ogg: its extension says enough (and costs no request).
    if (TYPES[ext] && !ogg) return byType(TYPES[ext], VIDEO_EXTS.has(ext) || (TYPES[ext].startsWith("audio/") ? false : null));
    const bytes = await firstBytes(uri);
    const streams = oggStreams(bytes.data);
    if (streams) {
      const codecs = streams.filter((s) => s.codec).map((s) => s.codec);
      const video = streams.some((s) => s.video);
      const type = `${video ? "video" : "audio"}/ogg${codecs.length ? `; codecs="${codecs.join(", ")}"` : ""}`;
      return byType(type, video);
    }
    const header = bytes.type?.split(";")[0].trim().toLowerCase();
    if (header && /^(audio|video)\//.test(header)) return byType(header, header.startsWith("audio/") ? false : null);
    return byType(TYPES[ext] ?? null, VIDEO_EXTS.has(ext) || null);
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
    const began = shown.shownNs - BigInt(Math.round(Number(shown.positionNs - from) / (this.video.playbackRate || 1)));
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

  /**
   * Pause at the wall-clock instant `atNs`. Resolves true once paused, false if called off
   * before (`cancelPauseAt`, a load); `pauseNow` brings it forward.
   */
  pauseAt(atNs) {
    this.cancelPauseAt();
    return new Promise((resolve) => {
      const due = {
        fire: () => {
          if (this.due !== due) return;
          this.due = null;
          this.video.pause();
          resolve(true);
        },
        cancel: () => {
          if (this.due !== due) return;
          this.due = null;
          resolve(false);
        },
      };
      this.due = due;
      until(atNs, () => this.due !== due).then(due.fire);
    });
  }

  /** Call off a pause still to come; returns whether there was one. */
  cancelPauseAt() {
    const due = this.due;
    due?.cancel();
    return !!due;
  }

  /** A pause still to come happens now. */
  pauseNow() {
    this.due?.fire();
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
    this.cancelPauseAt();
    this.uri = null;
    this.video.pause();
    this.video.removeAttribute("src");
    this.video.load();
  }
}
