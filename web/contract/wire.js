// The wire decoder (docs/PROTOCOL.md): topics, and every message's fields and limits, with
// the documented error codes and the field each error names.

import { fromUtf8 } from "./bytes.js";
import { isInteger, JsonError, parse, toBig } from "./json.js";

export const PREFIX = "continuity/v1";
export const MAX_PAYLOAD = 64 * 1024;
const MAX_TEXT = 1024;
const MAX_URI = 4096;
const MAX_ID = 64;
const MAX_LIST = 64;
const MAX_QUEUE = 256;
const MAX_ROSTER = 256;
const MAX_MEDIA_NS = (1n << 53n) - 1n;
/** The most loads and seeks a handoff result may count. */
const MAX_PREROLLS = 1000;
const MAX_UNIX_NS = 16725225600n * 1000000000n;
const MAX_U64 = (1n << 64n) - 1n;
const MAX_RATE = 64;

export class WireError extends Error {
  constructor(code, message, field) {
    super(field !== undefined ? `field '${field}': ${message}` : message);
    this.code = code;
    this.field = field;
  }
}

const fieldErr = (field, why) => new WireError("field", why, field);

/**
 * What joins a device's id and a helper's name in a helper's id (`<device>~<name>`): a
 * helper signs with the device's key and speaks for it. Not `.`: RabbitMQ turns a `.` in a
 * topic into a level separator.
 */
export const HELPER_SEP = "~";

/** An id's syntax; returns why it is not one, or null. */
export function idProblem(id) {
  if (id.length === 0) return "is empty";
  if (id.length > MAX_ID) return `is longer than ${MAX_ID} characters`;
  if (id.startsWith(".") || id.startsWith(HELPER_SEP)) return `starts with '${id[0]}'`;
  const bad = [...id].find((c) => !/[A-Za-z0-9._~-]/.test(c));
  return bad === undefined ? null : `has '${bad}' (allowed: A-Z a-z 0-9 . _ - ~)`;
}

/** A device's own id (a signer, a roster entry): an id without `~`, which marks a helper. */
export function deviceIdProblem(id) {
  const p = idProblem(id);
  if (p) return p;
  return id.includes(HELPER_SEP) ? `has '${HELPER_SEP}', which only a helper's id has (<device>${HELPER_SEP}<name>)` : null;
}

/** Parse a topic: {account, kind, device?, mediaKey?, retained}. */
export function parseTopic(topic) {
  const bad = (why) => new WireError("topic", `topic '${topic.slice(0, 200)}': ${why}`);
  if (!topic.startsWith(`${PREFIX}/`)) throw bad(`does not start with '${PREFIX}/'`);
  const parts = topic.slice(PREFIX.length + 1).split("/");
  const p = idProblem(parts[0]);
  if (p) throw bad(`account ${p}`);
  const rest = parts.slice(1);
  const dev = (d) => {
    const q = idProblem(d);
    if (q) throw bad(`device id ${q}`);
    return d;
  };
  let t;
  if (rest.length === 3 && rest[0] === "devices") {
    const kinds = { availability: "availability", info: "info", inbox: "inbox" };
    if (!(rest[2] in kinds)) {
      dev(rest[1]);
      throw bad(`unknown device topic '${rest[2]}'`);
    }
    t = { kind: kinds[rest[2]], device: dev(rest[1]) };
  } else if (rest.length === 3 && rest[0] === "sessions" && rest[2] === "state") {
    t = { kind: "state", device: dev(rest[1]) };
  } else if (rest.length === 3 && rest[0] === "media" && rest[2] === "resume") {
    if (!/^[0-9a-f]{32}$/.test(rest[1])) throw bad("media key is not 32 lower-case hex digits");
    t = { kind: "resume", mediaKey: rest[1] };
  } else if (rest.length === 1 && rest[0] === "events") t = { kind: "events" };
  else if (rest.length === 1 && rest[0] === "roster") t = { kind: "roster" };
  else if (rest.length === 1 && rest[0] === "ask") t = { kind: "ask" };
  else if (rest.length === 2 && rest[0] === "history" && rest[1] === "ask") t = { kind: "history-ask" };
  else if (rest.length === 2 && rest[0] === "history" && rest[1] === "answer") t = { kind: "history-answer" };
  else throw bad("not a continuity v1 topic");
  return { account: parts[0], ...t, retained: !["inbox", "events", "ask", "history-ask", "history-answer"].includes(t.kind) };
}

// --- Typed reading: each reader checks one value and names its field. -----------------

const typeName = (v) =>
  v === null ? "null" : Array.isArray(v) ? "an array" : typeof v === "bigint" ? "a number" : `a ${typeof v}`;

const str = (f, v) => {
  if (typeof v !== "string") throw fieldErr(f, `invalid type: ${typeName(v)}, expected a string`);
  return v;
};
const u64 = (f, v) => {
  const b = toBig(v);
  if (b === null || b < 0n || b > MAX_U64) throw fieldErr(f, `invalid value: expected u64, found ${String(v)}`);
  return b;
};
const i64 = (f, v) => {
  const b = toBig(v);
  if (b === null || b < -(1n << 63n) || b >= 1n << 63n) throw fieldErr(f, `invalid value: expected i64, found ${String(v)}`);
  return b;
};
const u32 = (f, v) => {
  const b = toBig(v);
  if (b === null || b < 0n || b > 0xffffffffn) throw fieldErr(f, `expected u32`);
  return Number(b);
};
const bool = (f, v) => {
  if (typeof v !== "boolean") throw fieldErr(f, `invalid type: ${typeName(v)}, expected a boolean`);
  return v;
};
const f64 = (f, v) => {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  throw fieldErr(f, `invalid type: ${typeName(v)}, expected f64`);
};
const oneOf = (names) => (f, v) => {
  if (typeof v !== "string" || !names.includes(v)) {
    throw fieldErr(f, `unknown variant \`${String(v)}\`, expected one of ${names.join(", ")}`);
  }
  return v;
};
const anyObject = (f, v) => {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw fieldErr(f, `is ${typeName(v)}, not an object`);
  return v;
};
const list = (item) => (f, v) => {
  if (!Array.isArray(v)) throw fieldErr(f, `invalid type: ${typeName(v)}, expected a sequence`);
  return v.map((x, i) => item(`${f}[${i}]`, x));
};

/**
 * An object with members `spec` (name → [reader, required]); unknown members are ignored.
 * Members are read in the order of the input, missing required ones reported after.
 */
const object = (spec) => (f, v) => {
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw fieldErr(f, `invalid type: ${typeName(v)}, expected a struct`);
  }
  const out = {};
  const at = (k) => (f ? `${f}.${k}` : k);
  for (const [k, x] of Object.entries(v)) {
    if (k in spec) out[k] = spec[k][0](at(k), x);
  }
  for (const [k, [, required]] of Object.entries(spec)) {
    if (required && !(k in out)) throw fieldErr(at(k), "missing");
  }
  return out;
};
const req = (r) => [r, true];
const opt = (r) => [r, false];

const CLASSES = ["phone", "tablet", "desktop", "tv", "speaker", "car", "other"];
const FAILURES = ["target-offline", "target-busy", "media-unavailable", "timeout", "rejected", "superseded", "nothing-playing", "unsupported-media"];
const stamp = object({ wall_ns: req(u64), counter: req(u64), device: req(str) });
const track = object({ language: opt(str), codec: opt(str) });
const media = object({
  id: req(str),
  uri: opt(str),
  title: opt(str),
  artist: opt(str),
  album: opt(str),
  artwork_uri: opt(str),
  duration_ns: opt(u64),
  audio_tracks: opt(list(track)),
  subtitle_tracks: opt(list(track)),
  alternates: opt(list(object({ class: req(oneOf(CLASSES)), uri: req(str) }))),
});
const anchor = object({
  position_ns: req(u64),
  at_unix_ns: req(u64),
  rate: req(f64),
  state: req(oneOf(["playing", "paused", "ended"])),
});
const EVENT_NAMES = [
  "started", "paused", "resumed", "seeked", "ended", "stopped",
  "handoff-requested", "handoff-offered", "handoff-accepted", "handoff-completed", "handoff-failed",
  "resume-offered", "resume-taken", "resume-declined", "device-online", "device-offline",
];
const handoffFacts = object({
  id: req(str),
  source: req(str),
  target: req(str),
  source_class: opt(oneOf(CLASSES)),
  target_class: opt(oneOf(CLASSES)),
  mode: req(oneOf(["push", "pull"])),
  trigger: req(oneOf(["manual", "automatic"])),
  latency_ns: opt(u64),
  position_error_ns: opt(i64),
  clock_offset_ns: opt(i64),
  clock_error_ns: opt(u64),
  failure: opt(oneOf(FAILURES)),
});
const queueItem = object({ id: req(str), uri: opt(str), title: opt(str), duration_ns: opt(u64) });

const MESSAGES = {
  availability: object({ v: req(u32), device: req(str), status: req(oneOf(["online", "offline"])) }),
  info: object({
    v: req(u32),
    device: req(object({ id: req(str), name: req(str), class: req(oneOf(CLASSES)) })),
    software: req(str),
    capabilities: opt(list(str)),
    stamp: req(stamp),
  }),
  state: object({
    v: req(u32),
    device: req(str),
    session: req(str),
    stamp: req(stamp),
    media: opt(media),
    anchor: opt(anchor),
    audio: opt(track),
    subtitle: opt(track),
    queue: opt(list(queueItem)),
    lease: req(object({ device: req(str), epoch: req(u64) })),
  }),
  resume: object({
    v: req(u32),
    media: req(media),
    position_ns: req(u64),
    finished: opt(bool),
    device: req(str),
    stamp: req(stamp),
    audio: opt(track),
    subtitle: opt(track),
  }),
  events: object({
    v: req(u32),
    id: opt(str),
    device: req(str),
    name: req(oneOf(EVENT_NAMES)),
    at_unix_ns: req(u64),
    media_id: opt(str),
    position_ns: opt(u64),
    session: opt(str),
    handoff: opt(handoffFacts),
  }),
  roster: object({
    v: req(u32),
    devices: req(
      list(
        object({
          device: req(str),
          name: req(str),
          public_key: req(str),
          changed_unix_ns: req(u64),
          revoked: opt(bool),
        }),
      ),
    ),
    key: opt(object({ id: req(str), changed_unix_ns: req(u64) })),
  }),
  ask: object({
    v: req(u32),
    device: req(str),
    seen: req(list(object({ device: req(str), session: opt(stamp) }))),
  }),
  "history-ask": object({
    v: req(u32),
    id: req(str),
    device: req(str),
    since_unix_ns: req(u64),
    held: req(
      list(
        object({
          device: req(str),
          days: req(list(object({ day: req(u32), count: req(u32), digest: req(str) }))),
        }),
      ),
    ),
  }),
  "history-answer": object({
    v: req(u32),
    device: req(str),
    ask: req(str),
    to: req(str),
    events: req(list(anyObject)),
    last: req(bool),
  }),
};

const BODIES = {
  play: {},
  pause: {},
  sync: {},
  seek: { position_ns: req(u64) },
  "handoff-request": { handoff: req(str), source: req(str), automatic: opt(bool) },
  "handoff-offer": { handoff: req(str), session: req(str), epoch: req(u64), t1_unix_ns: req(u64) },
  "handoff-accept": {
    handoff: req(str),
    t1_unix_ns: req(u64),
    t2_unix_ns: req(u64),
    t3_unix_ns: req(u64),
    anchor: req(anchor),
  },
  "handoff-reject": { handoff: req(str), reason: req(oneOf(FAILURES)) },
  "handoff-switch": { handoff: req(str), at_unix_ns: req(u64), position_ns: req(u64) },
  "handoff-cancel": { handoff: req(str), reason: req(oneOf(FAILURES)) },
  "handoff-result": {
    handoff: req(str),
    source: req(str),
    target: req(str),
    failure: opt(oneOf(FAILURES)),
    latency_ns: opt(u64),
    position_error_ns: opt(i64),
    clock_offset_ns: opt(i64),
    rtt_ns: opt(u64),
    prerolls: opt(u32),
  },
  takeover: { session: req(str), epoch: req(u64) },
  "clock-probe": { t1_unix_ns: req(u64) },
  "clock-reply": { t1_unix_ns: req(u64), t2_unix_ns: req(u64), t3_unix_ns: req(u64) },
};

const body = (f, v) => {
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw fieldErr(f, `invalid type: ${typeName(v)}, expected internally tagged enum CommandBody`);
  }
  if (!("type" in v)) throw fieldErr(f, "missing field `type`");
  const spec = BODIES[v.type];
  if (!spec) throw fieldErr(`${f}.type`, `unknown variant \`${String(v.type)}\``);
  return { type: v.type, ...object(spec)(f, v) };
};
MESSAGES.inbox = object({
  v: req(u32),
  id: req(str),
  from: req(str),
  to: req(str),
  sent_unix_ns: req(u64),
  body: req(body),
});

const sealedShape = object({
  v: req(u32),
  sealed: req(
    object({
      alg: req(str),
      key_id: req(str),
      sender: req(str),
      counter: req(u64),
      nonce: req(str),
      ct: req(str),
      sig: req(str),
    }),
  ),
});

// --- Checks beyond the types: ids, bounded texts and lists, ranges. -------------------

const id = (f, v) => {
  const p = idProblem(v);
  if (p) throw fieldErr(f, p);
};
const deviceId = (f, v) => {
  const p = deviceIdProblem(v);
  if (p) throw fieldErr(f, p);
};
const utf8Len = (s) => new TextEncoder().encode(s).length;
const text = (f, v, max) => {
  if (v === undefined) return;
  if (utf8Len(v) > max) throw fieldErr(f, `is ${utf8Len(v)} bytes, over the ${max}-byte limit`);
  // Rust's char::is_control: C0, DEL and C1.
  if ([...v].some((c) => c !== "\n" && c !== "\t" && /[\u0000-\u001f\u007f-\u009f]/.test(c))) {
    throw fieldErr(f, "has control characters");
  }
};
const mediaNs = (f, v) => {
  if (v !== undefined && v > MAX_MEDIA_NS) throw fieldErr(f, `${v} is over 2^53 - 1`);
};
const unixNs = (f, v) => {
  if (v > MAX_UNIX_NS) throw fieldErr(f, `${v} is after the year 2500`);
};
const count = (f, l, max) => {
  if (l && l.length > max) throw fieldErr(f, `has ${l.length} items, over the limit of ${max}`);
};
const same = (topicValue, bodyValue, f) => {
  if (topicValue !== bodyValue) throw fieldErr(f, `'${bodyValue}' does not match the topic's '${topicValue}'`);
};
const checkStamp = (f, s) => {
  unixNs(`${f}.wall_ns`, s.wall_ns);
  id(`${f}.device`, s.device);
};
const checkTrack = (f, t) => {
  text(`${f}.language`, t.language, 35);
  text(`${f}.codec`, t.codec, 128);
};
function checkMedia(f, m) {
  if (m.id === "") throw fieldErr(`${f}.id`, "is empty");
  text(`${f}.id`, m.id, MAX_URI);
  text(`${f}.uri`, m.uri, MAX_URI);
  text(`${f}.title`, m.title, MAX_TEXT);
  text(`${f}.artist`, m.artist, MAX_TEXT);
  text(`${f}.album`, m.album, MAX_TEXT);
  text(`${f}.artwork_uri`, m.artwork_uri, MAX_URI);
  mediaNs(`${f}.duration_ns`, m.duration_ns);
  for (const name of ["audio_tracks", "subtitle_tracks"]) {
    count(`${f}.${name}`, m[name], MAX_LIST);
    (m[name] ?? []).forEach((t, i) => checkTrack(`${f}.${name}[${i}]`, t));
  }
  count(`${f}.alternates`, m.alternates, MAX_LIST);
  (m.alternates ?? []).forEach((a, i) => text(`${f}.alternates[${i}].uri`, a.uri, MAX_URI));
}
function checkAnchor(f, a) {
  mediaNs(`${f}.position_ns`, a.position_ns);
  unixNs(`${f}.at_unix_ns`, a.at_unix_ns);
  if (!Number.isFinite(a.rate) || a.rate === 0 || Math.abs(a.rate) > MAX_RATE) {
    throw fieldErr(`${f}.rate`, `${a.rate} is not a finite non-zero rate within ±${MAX_RATE}`);
  }
}
const signed = (f, v) => {
  if (v !== undefined && (v > MAX_MEDIA_NS || v < -MAX_MEDIA_NS)) throw fieldErr(f, `${v} is beyond ±(2^53 - 1)`);
};

const MAX_HISTORY_DAYS = 600;
const MAX_HISTORY_EVENTS = 256;

const CHECKS = {
  availability: (m) => id("device", m.device),
  info: (m) => {
    id("device.id", m.device.id);
    text("device.name", m.device.name, MAX_TEXT);
    text("software", m.software, MAX_TEXT);
    count("capabilities", m.capabilities, MAX_LIST);
    (m.capabilities ?? []).forEach((c, i) => id(`capabilities[${i}]`, c));
    checkStamp("stamp", m.stamp);
  },
  state: (m) => {
    id("device", m.device);
    id("session", m.session);
    checkStamp("stamp", m.stamp);
    if (m.media) checkMedia("media", m.media);
    if (m.anchor) checkAnchor("anchor", m.anchor);
    if (m.audio) checkTrack("audio", m.audio);
    if (m.subtitle) checkTrack("subtitle", m.subtitle);
    count("queue", m.queue, MAX_QUEUE);
    (m.queue ?? []).forEach((q, i) => {
      text(`queue[${i}].id`, q.id, MAX_URI);
      text(`queue[${i}].uri`, q.uri, MAX_URI);
      text(`queue[${i}].title`, q.title, MAX_TEXT);
      mediaNs(`queue[${i}].duration_ns`, q.duration_ns);
    });
    id("lease.device", m.lease.device);
  },
  resume: (m) => {
    checkMedia("media", m.media);
    mediaNs("position_ns", m.position_ns);
    id("device", m.device);
    checkStamp("stamp", m.stamp);
  },
  inbox: (m) => {
    id("id", m.id);
    id("from", m.from);
    id("to", m.to);
    unixNs("sent_unix_ns", m.sent_unix_ns);
    const b = m.body;
    for (const k of ["handoff", "source", "target", "session"]) if (b[k] !== undefined) id(`body.${k}`, b[k]);
    for (const k of ["t1_unix_ns", "t2_unix_ns", "t3_unix_ns", "at_unix_ns"]) {
      if (b[k] !== undefined) unixNs(`body.${k}`, b[k]);
    }
    if (b.position_ns !== undefined) mediaNs("body.position_ns", b.position_ns);
    if (b.anchor) checkAnchor("body.anchor", b.anchor);
    if (b.type === "handoff-result") {
      mediaNs("body.latency_ns", b.latency_ns);
      signed("body.position_error_ns", b.position_error_ns);
      signed("body.clock_offset_ns", b.clock_offset_ns);
      mediaNs("body.rtt_ns", b.rtt_ns);
      if (b.prerolls !== undefined && (b.prerolls < 1 || b.prerolls > MAX_PREROLLS)) {
        throw fieldErr("body.prerolls", `${b.prerolls} is outside 1..=${MAX_PREROLLS}`);
      }
    }
    if (b.type === "clock-reply" && b.t3_unix_ns < b.t2_unix_ns) {
      throw fieldErr("body.t3_unix_ns", "is before t2_unix_ns: the reply left before the probe arrived");
    }
  },
  events: (m) => {
    id("device", m.device);
    unixNs("at_unix_ns", m.at_unix_ns);
    text("media_id", m.media_id, MAX_URI);
    mediaNs("position_ns", m.position_ns);
    if (m.id !== undefined) id("id", m.id);
    if (m.session !== undefined) id("session", m.session);
    const h = m.handoff;
    if (h) {
      for (const k of ["id", "source", "target"]) id(`handoff.${k}`, h[k]);
      mediaNs("handoff.latency_ns", h.latency_ns);
      mediaNs("handoff.clock_error_ns", h.clock_error_ns);
      signed("handoff.position_error_ns", h.position_error_ns);
      signed("handoff.clock_offset_ns", h.clock_offset_ns);
    }
  },
  roster: (m) => {
    count("devices", m.devices, MAX_ROSTER);
    if (m.key && !/^[0-9a-fA-F]{16}$/.test(m.key.id)) throw fieldErr("key.id", "is not 16 hex digits");
    m.devices.forEach((d, i) => {
      deviceId(`devices[${i}].device`, d.device);
      text(`devices[${i}].name`, d.name, MAX_TEXT);
    });
  },
  ask: (m) => {
    id("device", m.device);
    count("seen", m.seen, MAX_ROSTER);
    m.seen.forEach((s, i) => {
      id(`seen[${i}].device`, s.device);
      if (s.session !== undefined) checkStamp(`seen[${i}].session`, s.session);
    });
  },
  "history-ask": (m) => {
    id("id", m.id);
    id("device", m.device);
    unixNs("since_unix_ns", m.since_unix_ns);
    count("held", m.held, MAX_ROSTER);
    const days = m.held.reduce((n, h) => n + h.days.length, 0);
    if (days > MAX_HISTORY_DAYS) throw fieldErr("held", `lists ${days} days, over the limit of ${MAX_HISTORY_DAYS}`);
    m.held.forEach((h, i) => {
      id(`held[${i}].device`, h.device);
      h.days.forEach((d, j) => {
        if (!/^[0-9a-f]{16}$/.test(d.digest)) throw fieldErr(`held[${i}].days[${j}].digest`, "is not 16 lower-case hex digits");
        if (BigInt(d.day) > MAX_UNIX_NS / 86400000000000n) throw fieldErr(`held[${i}].days[${j}].day`, "is after the year 2500");
      });
    });
  },
  "history-answer": (m) => {
    id("device", m.device);
    id("ask", m.ask);
    id("to", m.to);
    count("events", m.events, MAX_HISTORY_EVENTS);
  },
};

function checkSealed(env) {
  const s = env.sealed;
  if (s.alg !== "A256GCM") throw fieldErr("sealed.alg", `'${s.alg}' is not supported (expected A256GCM)`);
  if (!/^[0-9a-f]{16}$/.test(s.key_id)) throw fieldErr("sealed.key_id", "is not 16 lower-case hex digits");
  deviceId("sealed.sender", s.sender);
  const b64 = (f, v, len) => {
    if (!/^[A-Za-z0-9_-]*$/.test(v)) throw fieldErr(f, "is not base64url");
    if (len !== undefined && v.length !== len) throw fieldErr(f, "has the wrong length");
  };
  b64("sealed.nonce", s.nonce, 16);
  b64("sealed.ct", s.ct);
  if (s.ct.length < 22 || s.ct.length % 4 === 1) {
    throw fieldErr("sealed.ct", "is shorter than the 16-byte tag, or not whole bytes");
  }
  b64("sealed.sig", s.sig, 86);
}

/**
 * Decode `payload` (bytes) received on `topic`. Returns {topic, kind, body}: kind is
 * "cleared" (an empty retained payload), "sealed" (body: the envelope) or the topic's kind.
 * `mediaKey(id)` gives a resume topic's key for a media id (the plain or the keyed hash);
 * without it the media key is not checked.
 */
export function decode(topicText, payload, mediaKey) {
  const topic = parseTopic(topicText);
  if (payload.length > MAX_PAYLOAD) {
    throw new WireError("too-large", `payload of ${payload.length} bytes is over the ${MAX_PAYLOAD}-byte limit`);
  }
  if (payload.length === 0) {
    if (topic.retained) return { topic, kind: "cleared", body: null };
    throw new WireError("json", "empty payload");
  }
  let value;
  try {
    value = parse(fromUtf8(payload));
  } catch (e) {
    if (e instanceof JsonError || e instanceof TypeError) throw new WireError("json", `payload is not JSON: ${e.message}`);
    throw e;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new WireError("json", `payload is not a JSON object: found ${typeName(value)}`);
  }
  if (!("v" in value)) throw fieldErr("v", "missing");
  if (!isInteger(value.v) || value.v < 0) throw fieldErr("v", "must be a whole number");
  if (toBig(value.v) !== 1n) throw new WireError("version", `unsupported major version ${value.v}`);
  if ("sealed" in value) {
    const env = sealedShape("", value);
    checkSealed(env);
    return { topic, kind: "sealed", body: env };
  }
  const msg = MESSAGES[topic.kind]("", value);
  if (topic.kind === "availability") same(topic.device, msg.device, "device");
  if (topic.kind === "info") same(topic.device, msg.device.id, "device.id");
  if (topic.kind === "state") same(topic.device, msg.device, "device");
  if (topic.kind === "inbox") same(topic.device, msg.to, "to");
  CHECKS[topic.kind](msg);
  if (topic.kind === "resume" && mediaKey && mediaKey(msg.media.id) !== topic.mediaKey) {
    throw fieldErr("media.id", "does not hash to the topic's media key");
  }
  const kinds = { inbox: "command", events: "event" };
  return { topic, kind: kinds[topic.kind] ?? topic.kind, body: msg };
}
