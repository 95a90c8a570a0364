// The web TV as a device of an account (docs/PROTOCOL.md): it pairs as a joiner, seals and
// signs everything it says, opens and checks everything it hears, keeps the directory of the
// account's devices, sessions and resume points, measures the other devices' clocks, and
// plays every handoff role (target, source, initiator) with the same rules as the element:
// make-before-break, one agreed instant, the lease.

import { b64url, fromB64url, fromUtf8, hex, utf8 } from "./contract/bytes.js";
import { parse, stringify, toBig } from "./contract/json.js";
import * as pairing from "./contract/pairing.js";
import { deriveKeys, Opener, seal, SealError, secretKey } from "./contract/seal.js";
import { HELPER_SEP, idProblem, parseTopic, WireError } from "./contract/wire.js";
import { subtle, webcrypto } from "./contract/crypto.js";
import * as keystore from "./keystore.js";
import { Keeper } from "./keeper.js";
import { MqttClient, nowNs } from "./mqtt.js";

export const SOFTWARE = "continuity-web 0.1.0";
const CLASS = "tv";
/** A device that came online is suggested when this TV plays within this time of it. */
const SUGGEST_WITHIN_NS = 10_000_000_000n;
const MS = 1000000n;
const SECOND = 1000000000n;
/** Handoff timing, as the element's defaults. */
const PREROLL_LEAD_NS = 50n * MS;
const SWITCH_MARGIN_NS = 15n * MS;
const HANDOFF_TIMEOUT_NS = 3n * SECOND;
const MAX_SWITCH_WAIT_NS = SECOND;
/** After the switch instant, how long a source watches its target before the handoff is done. */
const SWITCH_WATCH_NS = 2n * SECOND;
/** A live session moves on while this TV seeks to it: aim this far ahead of its position. */
const PULL_LEAD_NS = 40n * MS;
/** How long a playing device that went offline must stay away before a witness point. */
const WITNESS_GRACE_MS = 2000;
/** A witness that never measured the player's clock waits this much longer. */
const UNMEASURED_WITNESS_MS = 1000;
/** A stamp further ahead than this is refused (PROTOCOL, "Stamps and merging"). */
const MAX_AHEAD_NS = 300n * SECOND;
/** Clock samples older than this give way to any new one. */
const CLOCK_SAMPLE_TTL_NS = 600n * SECOND;
/** Republish the anchor when playback drifts from it by more than this. */
const DRIFT_NS = 100n * MS;
const HEARTBEAT_MS = 30000;

const big = (v) => (v === undefined || v === null ? null : toBig(v));
const num = (v) => (typeof v === "bigint" && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
const randomHex = (n) => hex(webcrypto.getRandomValues(new Uint8Array(n)));
const maxBig = (a, b) => (a > b ? a : b);
const sameBytes = (a, b) => !!a && !!b && a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * Whether lease `a` comes after lease `b`: by epoch, then by device id, so that two devices
 * that take one session at the same epoch (two pulls at once) agree which one holds it.
 */
export const leaseAfter = (a, b) => big(a.epoch) > big(b.epoch) || (big(a.epoch) === big(b.epoch) && a.device > b.device);

/** Stamps compare by wall, then counter, then device (byte-wise). */
export function compareStamps(a, b) {
  const aw = big(a.wall_ns);
  const bw = big(b.wall_ns);
  if (aw !== bw) return aw < bw ? -1 : 1;
  const ac = big(a.counter);
  const bc = big(b.counter);
  if (ac !== bc) return ac < bc ? -1 : 1;
  return a.device < b.device ? -1 : a.device > b.device ? 1 : 0;
}

/** Position of `anchor` at instant `atNs` of its own device's clock, clamped to the duration. */
export function positionAt(anchor, atNs, durationNs) {
  let p = big(anchor.position_ns);
  if (anchor.state === "playing") {
    const dt = Number(atNs - big(anchor.at_unix_ns)) * anchor.rate;
    p += BigInt(Math.round(dt));
  }
  if (p < 0n) p = 0n;
  const d = big(durationNs);
  if (d !== null && p > d) p = d;
  return p;
}

/** The URI a TV plays of a media: its rendition for the class, else `uri`. */
export function uriFor(media) {
  return media.alternates?.find((a) => a.class === CLASS)?.uri ?? media.uri ?? null;
}

/** What to call a media: its title, else its file name, else its id. */
export function mediaTitle(media) {
  if (media.title) return media.title;
  const name = (media.uri ?? media.id).split(/[?#]/)[0].split("/").pop();
  try {
    return decodeURIComponent(name) || media.id;
  } catch {
    return name || media.id;
  }
}

/** Whether a browser can fetch `uri` (a `file:` URI of another device cannot). */
export const playableHere = (uri) => /^(https?:|blob:)/i.test(uri ?? "");

/** The resume rules: "not-started", "finished" or "resume". */
export function verdict(positionNs, durationNs) {
  const d = big(durationNs);
  const p = big(positionNs);
  if (d !== null && d > 0n && p * 100n >= d * 95n) return "finished";
  const threshold = d !== null && d < 200n * SECOND ? d / 20n : 10n * SECOND;
  return p < threshold ? "not-started" : "resume";
}

/** A hybrid logical clock (PROTOCOL, "Stamps and merging"). */
class Hlc {
  constructor(device) {
    this.device = device;
    this.wall = 0n;
    this.counter = 0n;
  }
  stamp() {
    const now = nowNs();
    if (now > this.wall) {
      this.wall = now;
      this.counter = 0n;
    } else this.counter += 1n;
    return { wall_ns: this.wall, counter: num(this.counter), device: this.device };
  }
  witness(s) {
    const w = big(s.wall_ns);
    const c = big(s.counter);
    if (w > this.wall || (w === this.wall && c > this.counter)) {
      this.wall = w;
      this.counter = c;
    }
  }
}

/**
 * The account membership kept in IndexedDB under `account:<name>`:
 * {account, secret: HKDF CryptoKey, roster}.
 */
export async function loadIdentity() {
  let me = await keystore.get("device");
  if (!me) {
    const pair = await subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    const jwk = await subtle.exportKey("jwk", pair.publicKey);
    me = { id: `web-${randomHex(6)}`, signer: pair.privateKey, publicKey: jwk.x };
    await keystore.put("device", me);
  }
  return me;
}

/** A pairing failure the person should read. */
export class PairFailure extends Error {}

/**
 * Join `account` as a new device through a host that runs `continuity pair`.
 * `ui.code(code)` shows the code and resolves true (the codes match) or false.
 * Resolves with the membership, which is also stored.
 */
export async function join({ brokerUrl, account, name, me, ui, timeoutMs = 120000 }) {
  const base = `continuity/v1/${account}/pairing`;
  const inbox = [];
  let wake = () => {};
  const client = new MqttClient(brokerUrl, {
    clientId: `${me.id}.pair-${randomHex(3)}`,
    onMessage: (topic, payload) => {
      inbox.push({ topic, payload });
      wake();
    },
  });
  await client.connect();
  const deadline = Date.now() + timeoutMs;
  const next = async (accept) => {
    for (;;) {
      while (inbox.length) {
        const m = inbox.shift();
        if (m.payload.length === 0) continue;
        let msg;
        try {
          msg = pairing.decode(m.payload);
        } catch (e) {
          console.warn(`pairing: refused a message on ${m.topic}: ${e.message}`);
          continue;
        }
        const r = accept(m.topic, msg);
        if (r) return r;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new PairFailure("no device answered in time: run `continuity pair` on a paired device");
      await new Promise((r) => {
        wake = r;
        setTimeout(r, Math.min(left, 1000));
      });
    }
  };
  try {
    await client.subscribe([`${base}/+/hello`, `${base}/+/host`]);
    ui.status?.("Waiting for a device that runs “continuity pair”…");
    const hello = await next((topic, m) => m.type === "hello" && big(m.expires_unix_ns) > nowNs() && topic.endsWith("/hello") && !idProblem(m.exchange) && m);
    const ex = hello.exchange;
    ui.status?.(`Pairing with ${hello.host.name}…`);
    const x = await pairing.x25519();
    const nonce = webcrypto.getRandomValues(new Uint8Array(32));
    const publish = (msg) => client.publish(`${base}/${ex}/joiner`, utf8(pairing.encode(msg)));
    await publish({
      type: "commit",
      exchange: ex,
      joiner: { device: me.id, name },
      public_key: me.publicKey,
      commitment: await pairing.commitment(x.public, nonce),
    });
    const fromHost = (want) => (topic, m) => {
      if (topic !== `${base}/${ex}/host` || m.exchange !== ex) return null;
      if (m.type === "refused" && m.to === me.id) throw new PairFailure(`${hello.host.name} refused: ${m.reason}`);
      return want.includes(m.type) && (m.to === me.id) ? m : null;
    };
    const reveal = await next(fromHost(["reveal"]));
    const hostX = fromB64url(reveal.x25519);
    const hostNonce = fromB64url(reveal.nonce);
    if (hostX?.length !== 32 || hostNonce?.length !== 32 || fromB64url(reveal.public_key)?.length !== 32) {
      throw new PairFailure("the host's reveal is malformed");
    }
    await publish({ type: "open", exchange: ex, x25519: b64url(x.public), nonce: b64url(nonce) });
    const input = pairing.transcriptInput([
      utf8(ex),
      utf8(hello.host.device),
      utf8(reveal.public_key),
      utf8(me.id),
      utf8(me.publicKey),
      hostX,
      x.public,
      hostNonce,
      nonce,
    ]);
    const hash = new Uint8Array(await subtle.digest("SHA-256", input));
    const key = await pairing.exchangeKey(hash, await pairing.agree(x.private, hostX));
    const same = await ui.code(pairing.codeOf(hash), hello.host.name);
    if (!same) {
      await publish({ type: "decline", exchange: ex });
      throw new PairFailure("the codes differ: nothing was paired");
    }
    await publish({ type: "confirm", exchange: ex, sealed: await pairing.sealWith(key, "continuity-v1 pair confirm", utf8(ex)) });
    ui.status?.(`Waiting for ${hello.host.name} to confirm…`);
    const welcome = await next(fromHost(["welcome"]));
    let w;
    try {
      w = parse(fromUtf8(await pairing.openWith(key, "continuity-v1 pair welcome", welcome.sealed)));
    } catch {
      throw new PairFailure("the welcome does not open: the exchange was tampered with");
    }
    if (w.account !== account) throw new PairFailure(`the host answered for account '${w.account}', not '${account}'`);
    const secret = fromB64url(w.secret);
    if (secret?.length !== 32) throw new PairFailure("the welcome has no valid account secret");
    const membership = { account, secret: await secretKey(secret), roster: w.roster, name };
    secret.fill(0);
    await keystore.put(`account:${account}`, membership);
    return membership;
  } finally {
    client.disconnect();
  }
}

/** Merge roster `b` into `a`, entry by entry (the later change wins, a revocation a tie). */
export function mergeRoster(a, b) {
  const by = new Map(a.devices.map((d) => [d.device, d]));
  for (const d of b.devices) {
    const o = by.get(d.device);
    const later = !o || big(d.changed_unix_ns) > big(o.changed_unix_ns) || (big(d.changed_unix_ns) === big(o.changed_unix_ns) && d.revoked && !o.revoked);
    if (later) by.set(d.device, d);
  }
  const out = { v: 1, devices: [...by.values()] };
  const key = [a.key, b.key].filter(Boolean).sort((x, y) => (big(x.changed_unix_ns) < big(y.changed_unix_ns) ? 1 : -1))[0];
  if (key) out.key = key;
  return out;
}

/**
 * A paired web TV on the broker. `player` is a Player; `events` an EventTarget that gets
 * "change" (the directory or own session changed), "announce" (a sentence for the live
 * region), "handoff" (a result), "log" (a refusal or problem).
 */
export class Device extends EventTarget {
  constructor({ brokerUrl, me, membership, player }) {
    super();
    this.brokerUrl = brokerUrl;
    this.me = me;
    this.account = membership.account;
    this.membership = membership;
    this.name = membership.name ?? "Web TV";
    this.player = player;
    this.hlc = new Hlc(me.id);
    this.prefix = `continuity/v1/${this.account}`;
    // The directory.
    this.availability = new Map();
    this.info = new Map();
    this.sessions = new Map();
    this.resume = new Map();
    this.clocks = new Map();
    this.probes = new Map();
    this.seenCommands = new Map();
    this.replies = [];
    // Own session.
    this.session = null;
    this.lease = { device: me.id, epoch: 0 };
    this.media = null;
    this.anchor = null;
    this.audio = null;
    this.subtitle = null;
    this.queue = [];
    this.handoff = { target: null, source: null, pending: new Map() };
    this.seq = 0;
    // Random per start, in every command and handoff id this TV makes: a page that reloads
    // within a millisecond (or whose clock went back) makes no id a receiver has seen, and
    // would drop as a duplicate.
    this.instance = `${randomHex(3)}-`;
    // Since this TV's session last moved to another device, its player paused: a play after
    // that is a person pressing play (which takes the session back), not the player catching
    // up with the pause.
    this.pausedSinceMoved = false;
    this.connected = false;
    this.synced = false;
    // The copies this TV keeps on the broker, by topic, exactly as sent or received: its own
    // retained topics, and for each media the newest resume point it holds (its own or
    // another device's: a point outlives its author). It repairs them and answers asks with them.
    this.lastCopies = new Map();
    // Whether the broker holds them, and when to publish which again (keeper.js).
    this.keeper = new Keeper();
    this.repairTimer = null;
    // The latest arrival on each topic whose message is still being opened (decoding is
    // asynchronous, so two on one topic overlap): a copy taken to keep when a later arrival
    // already replaced it on the broker is put back.
    this.arriving = new Map();
    // Devices that came online, by when (ns): suggested once, while this TV plays.
    this.suggest = new Map();
  }

  // --- Keys and envelopes -------------------------------------------------------------

  async init() {
    this.keys = await deriveKeys(this.membership.secret);
    this.opener = new Opener([this.keys], this.membership.roster);
    const floor = BigInt(localStorage.getItem(`counter:${this.me.id}`) ?? "0");
    this.counter = floor;
    this.counterFloor = floor;
    const seen = JSON.parse(localStorage.getItem(`seen:${this.me.id}`) ?? "[]");
    for (const [sender, topic, c] of seen) this.opener.remember(sender, topic, BigInt(c));
  }

  /** The next envelope counter: max(last + 1, now in µs), with a floor kept a minute ahead. */
  nextCounter() {
    const us = nowNs() / 1000n;
    this.counter = maxBig(this.counter + 1n, us);
    if (this.counter >= this.counterFloor) {
      this.counterFloor = this.counter + 60000000n;
      localStorage.setItem(`counter:${this.me.id}`, String(this.counterFloor));
    }
    return this.counter;
  }

  async sealed(topic, msg) {
    const env = await seal(this.keys, this.me.signer, topic, this.me.id, this.nextCounter(), utf8(stringify(msg)));
    return utf8(stringify(env));
  }

  async send(topic, msg, { retain = false, qos = 1, plain = false } = {}) {
    if (!this.client?.open) return;
    const payload = plain ? utf8(stringify(msg)) : await this.sealed(topic, msg);
    if (retain) {
      this.lastCopies.set(topic, payload);
      this.keeper.sent(topic);
    }
    try {
      await this.client.publish(topic, payload, { retain, qos });
    } catch (e) {
      this.log(`not sent on ${topic}: ${e.message}`);
    }
  }

  log(text) {
    console.warn(`continuity: ${text}`);
    this.dispatchEvent(new CustomEvent("log", { detail: text }));
  }

  announce(text) {
    this.dispatchEvent(new CustomEvent("announce", { detail: text }));
  }

  changed() {
    this.dispatchEvent(new Event("change"));
  }

  // --- The connection -----------------------------------------------------------------

  topic(...parts) {
    return [this.prefix, ...parts].join("/");
  }

  availabilityMsg(status) {
    return { v: 1, device: this.me.id, status };
  }

  /** Connect, and keep reconnecting with backoff until `stop()`. */
  async start() {
    await this.init();
    this.running = true;
    let backoff = 500;
    while (this.running) {
      try {
        await this.connectOnce();
        backoff = 500;
        await new Promise((r) => (this.closed = r));
      } catch (e) {
        this.log(`broker: ${e.message}; trying again in ${(backoff / 1000).toFixed(1)} s`);
      }
      this.connected = false;
      this.synced = false;
      this.changed();
      if (!this.running) break;
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  async connectOnce() {
    const will = {
      topic: this.topic("devices", this.me.id, "availability"),
      payload: utf8(stringify(this.availabilityMsg("offline"))),
      qos: 1,
      retain: true,
    };
    this.client = new MqttClient(this.brokerUrl, {
      clientId: `${this.me.id}-${randomHex(3)}`,
      will,
      onMessage: (topic, payload, meta) => this.receive(topic, payload, meta),
      onClose: () => this.closed?.(),
    });
    await this.client.connect();
    this.connected = true;
    // Its inbox, then the topics of each device the roster names (no other id's reach this
    // TV, however many a stranger fills), then the account's shared topics.
    this.deviceFilters = this.rosterFilters();
    await this.client.subscribe([
      this.topic("devices", this.me.id, "inbox"),
      ...this.deviceFilters,
      this.topic("media", "+", "resume"),
      this.topic("roster"),
      this.topic("ask"),
      // Last: the echo of its sync comes after everything retained above (PROTOCOL.md, sync).
      this.topic("devices", this.syncInbox, "inbox"),
    ]);
    await this.send(will.topic, this.availabilityMsg("online"), { retain: true, plain: true });
    await this.publishInfo();
    await this.publishSession();
    // The resume points it keeps, exactly as their authors sealed them: a broker that
    // restarted empty while this TV was away is whole again (PROTOCOL.md, Durability).
    for (const [topic, payload] of this.lastCopies) {
      if (parseTopic(topic).kind !== "resume") continue;
      this.keeper.sent(topic);
      await this.client.publish(topic, payload, { retain: true, qos: 1 }).catch(() => {});
    }
    this.syncId = `sync-${randomHex(4)}`;
    const sync = { v: 1, id: this.syncId, from: this.syncInbox, to: this.syncInbox, sent_unix_ns: nowNs(), body: { type: "sync" } };
    await this.send(this.topic("devices", this.syncInbox, "inbox"), sync, { qos: 1 });
    clearInterval(this.ticker);
    this.ticker = setInterval(() => this.tick(), 250);
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
    this.changed();
  }

  async stop() {
    this.running = false;
    clearInterval(this.ticker);
    clearInterval(this.heartbeat);
    if (this.repairTimer) clearTimeout(this.repairTimer);
    if (this.anchor) await this.recordResume(this.player.positionNs);
    await this.send(this.topic("devices", this.me.id, "availability"), this.availabilityMsg("offline"), { retain: true, plain: true });
    this.client?.disconnect();
  }

  async publishInfo() {
    await this.send(
      this.topic("devices", this.me.id, "info"),
      {
        v: 1,
        device: { id: this.me.id, name: this.name, class: CLASS },
        software: SOFTWARE,
        capabilities: ["play", "resume", "handoff"],
        stamp: this.hlc.stamp(),
      },
      { retain: true },
    );
  }

  sessionState() {
    const s = {
      v: 1,
      device: this.me.id,
      session: this.session ?? `${this.me.id}-idle`,
      stamp: this.hlc.stamp(),
    };
    if (this.media && this.anchor) {
      s.media = this.media;
      s.anchor = this.anchor;
      if (this.audio) s.audio = this.audio;
      if (this.subtitle) s.subtitle = this.subtitle;
    }
    s.queue = this.queue;
    s.lease = this.lease;
    return s;
  }

  /** A handoff's target before the switch: what it loads and prerolls is not yet a session. */
  get preparing() {
    return !!this.handoff.target && !this.handoff.target.switch;
  }

  async publishSession() {
    // A handoff's target says nothing of what it loads until the switch: the media it
    // prerolls is not a session of its own (others would take it for one, paused).
    if (this.preparing) return this.changed();
    const s = this.sessionState();
    this.sessions.set(this.me.id, s);
    this.suggestHandoffs();
    this.changed();
    await this.send(this.topic("sessions", this.me.id, "state"), s, { retain: true });
  }

  /** Send a command to `to`'s inbox (clock probes and replies at QoS 0). */
  async command(to, body, id) {
    this.seq += 1;
    const msg = {
      v: 1,
      id: id ?? `c-${(nowNs() / MS).toString(16)}-${this.instance}${this.seq}`,
      from: this.me.id,
      to,
      sent_unix_ns: nowNs(),
      body,
    };
    const clock = body.type === "clock-probe" || body.type === "clock-reply";
    await this.send(this.topic("devices", to, "inbox"), msg, { qos: clock ? 0 : 1 });
  }

  // --- What arrives -------------------------------------------------------------------

  async receive(topic, payload, meta) {
    const arrival = {};
    this.arriving.set(topic, arrival);
    try {
      return await this.take(topic, payload, meta, arrival);
    } finally {
      if (this.arriving.get(topic) === arrival) this.arriving.delete(topic);
    }
  }

  async take(topic, payload, { arrivedNs, retain = false }, arrival) {
    const ours = sameBytes(this.lastCopies.get(topic), payload);
    // Whatever it is, the keeper judges it first: the broker's copy of a topic this TV keeps
    // is now this, and anything else than the kept copy is put back unless the message turns
    // out to be a newer copy to keep (a resume point, below).
    if (typeof this.keeper.arrived(topic, ours, this.nowMs()) === "number") this.armRepairs();
    let msg;
    try {
      msg = await this.opener.decode(topic, payload);
    } catch (e) {
      // The copy this TV keeps, back from the broker (its own repair's echo, refused as a
      // replay of what it already took): nothing to repair, nothing to say.
      if (ours) return;
      if (e instanceof SealError || e instanceof WireError) {
        this.log(`refused on ${topic}: ${e.code}: ${e.message}`);
        return;
      }
      throw e;
    }
    if (msg.topic.account !== this.account) return;
    const own = msg.topic.device === this.me.id;
    if (msg.kind === "cleared") return;
    const body = msg.body;
    if (body.stamp && big(body.stamp.wall_ns) > nowNs() + MAX_AHEAD_NS) {
      this.log(`refused on ${topic}: its stamp is ${(Number(big(body.stamp.wall_ns) - nowNs()) / 1e9).toFixed(0)} s ahead of this clock`);
      return;
    }
    if (body.stamp) this.hlc.witness(body.stamp);
    switch (msg.kind) {
      case "availability":
        return this.onAvailability(topic, body, own, retain);
      case "info":
        if (own) return;
        this.info.set(body.device.id, body);
        this.suggestHandoffs();
        return this.changed();
      case "state":
        if (own) return;
        return this.onState(body);
      case "resume":
        if ((await this.keys.mediaKey(body.media.id)) !== msg.topic.mediaKey) {
          this.log(`refused on ${topic}: its media does not hash to the topic's key`);
          return;
        }
        return this.onResume(msg.topic.mediaKey, body, topic, payload, arrival);
      case "roster":
        return this.onRoster(body);
      case "ask":
        return this.onAsk(body);
      case "command":
        if (body.to === this.me.id || body.to === this.syncInbox) return this.onCommand(body, arrivedNs, topic);
        return;
      default:
        return;
    }
  }

  /** Monotonic milliseconds, for the keeper. */
  nowMs() {
    return performance.now();
  }

  /** Wake up when the keeper's next repair or answer is due. */
  armRepairs() {
    // Only a timer that exists: Node 18's mock timers (Debian's, in the unit tests) throw on
    // clearTimeout(null).
    if (this.repairTimer) clearTimeout(this.repairTimer);
    const at = this.keeper.nextDue();
    this.repairTimer = at === null ? null : setTimeout(() => this.repairDue(), Math.max(0, at - this.nowMs()));
  }

  /** Publish again the copies the keeper finds lost, or that another device's broker lacks. */
  async repairDue() {
    this.repairTimer = null;
    for (const { topic, answer } of this.keeper.due(this.nowMs())) {
      const copy = this.lastCopies.get(topic);
      if (!copy || !this.client?.open) continue;
      if (!answer) this.log(`repairing ${topic}: the broker held something else than this device's copy`);
      this.keeper.sent(topic);
      await this.client.publish(topic, copy, { retain: true, qos: 1 }).catch(() => {});
    }
    this.armRepairs();
  }

  onAvailability(topic, body, own, retain) {
    if (own) return;
    const was = this.availability.get(body.device);
    this.availability.set(body.device, body.status);
    if (body.status === "online" && was !== "online") this.probeSeveral(body.device);
    // Online when this TV subscribed (the broker's retained picture) is not news.
    if (body.status === "online" && was !== "online" && !retain) {
      this.suggest.set(body.device, nowNs());
      this.suggestHandoffs();
    }
    if (body.status === "offline" && was === "online") {
      this.targetWentOffline(body.device);
      this.witness(body.device);
    }
    this.changed();
  }

  /**
   * Devices of another class that came online while this TV plays (or up to 10 s before it
   * started), once their info is in: a "suggest" event each, once, for the page to offer
   * ("Phone is on: continue there?"). Nothing happens by itself.
   */
  suggestHandoffs() {
    const now = nowNs();
    for (const [device, at] of this.suggest) if (now - at > SUGGEST_WITHIN_NS) this.suggest.delete(device);
    if (!this.active || this.anchor?.state !== "playing") return;
    for (const device of [...this.suggest.keys()]) {
      const info = this.info.get(device);
      if (!info) continue;
      this.suggest.delete(device);
      if (this.availability.get(device) !== "online" || info.device.class === CLASS) continue;
      if (!info.capabilities?.includes("handoff")) continue;
      this.dispatchEvent(new CustomEvent("suggest", { detail: { device, name: info.device.name, class: info.device.class } }));
    }
  }

  /**
   * A playing device went offline: record where its media stopped, if it stays away (and
   * still needs a witness then: see `needsWitness`), by the resume rules.
   */
  witness(device) {
    const s = this.needsWitness(device);
    if (!s) return;
    const at = nowNs() + this.offsetOf(device);
    const position = positionAt(s.anchor, at, s.media.duration_ns);
    // One that never measured the player's clock reads its anchor with its own (this TV was
    // frozen, or came online as it died): it waits longer, so that a witness that measured
    // it goes first, and stands.
    const wait = this.clocks.has(device) ? WITNESS_GRACE_MS : WITNESS_GRACE_MS + UNMEASURED_WITNESS_MS;
    // The latest time it went offline is the one witnessed.
    const due = {};
    this.witnessing ??= new Map();
    this.witnessing.set(device, due);
    setTimeout(() => {
      if (this.witnessing.get(device) !== due) return;
      this.witnessing.delete(device);
      if (this.availability.get(device) !== "offline" || this.needsWitness(device) !== s) return;
      if (this.newerThan(s)) return;
      const v = verdict(position, s.media.duration_ns);
      if (v === "not-started") return;
      this.writeResume(s.media, v === "finished" ? 0n : position, device, v === "finished", s);
    }, wait);
  }

  /**
   * Whether another device made a point of `s`'s media, or played it, after `s` (the dead
   * player's last state; stamps are causal): a witness that came first, or a device that
   * started it since. That stands (this TV may have seen the will late: frozen, or cut off).
   */
  newerThan(s) {
    const media = s.media.id;
    const session = [...this.sessions.values()].some(
      (o) => o.device !== s.device && o.lease.device === o.device && o.media?.id === media && compareStamps(o.stamp, s.stamp) > 0,
    );
    const point = [...this.resume.values()].some((p) => p.media.id === media && p.stamp.device !== s.device && compareStamps(p.stamp, s.stamp) > 0);
    return session || point;
  }

  /**
   * Whether another device holds `s`'s session at a higher epoch: `s` is an old copy (its
   * device was frozen or cut off when the session moved, and has not said so yet).
   */
  superseded(s) {
    return [...this.sessions.values()].some((o) => o.device !== s.device && o.session === s.session && o.lease.device === o.device && leaseAfter(o.lease, s.lease));
  }

  /**
   * The session of `device` if a witness point is due for it: the device held it and played
   * it; no other device holds that session with a higher epoch (it died while a handoff moved
   * it); and neither this TV nor another online device plays that media now (its point would
   * hide the live session).
   */
  needsWitness(device) {
    const s = this.sessions.get(device);
    if (!s?.media || s.anchor?.state !== "playing" || s.lease.device !== device) return null;
    const moved = [...this.sessions.values()].some((o) => o.device !== s.device && o.session === s.session && leaseAfter(o.lease, s.lease));
    const media = s.media.id;
    const here = this.active && this.anchor?.state === "playing" && this.media?.id === media;
    const elsewhere = [...this.sessions.values()].some(
      (o) =>
        o.device !== s.device &&
        o.device !== this.me.id &&
        o.lease.device === o.device &&
        o.media?.id === media &&
        o.anchor?.state === "playing" &&
        this.availability.get(o.device) === "online" &&
        !this.superseded(o),
    );
    return moved || here || elsewhere ? null : s;
  }

  onState(s) {
    const old = this.sessions.get(s.device);
    if (old && compareStamps(s.stamp, old.stamp) <= 0) return;
    this.sessions.set(s.device, s);
    // Whether this browser can play what it plays, learnt before anyone asks this TV for it;
    // a media it cannot play is offered nowhere on its screen.
    const uri = s.media && uriFor(s.media);
    if (playableHere(uri) && this.player.supportKnown(uri) === undefined) {
      this.player.support(uri).then((v) => v.ok || this.changed());
    }
    // The lease: my session is held by another device now.
    if (s.session === this.session && s.lease.device === s.device && s.lease.device !== this.me.id) {
      this.loseLease(s.lease);
    }
    this.changed();
  }

  onResume(key, point, topic, payload, arrival) {
    const old = this.resume.get(key);
    // An older point than the newest this TV holds (replayed, or a device that knew no
    // better): the keeper puts the newest back.
    if (old && compareStamps(point.stamp, old.stamp) < 0) return;
    // The same point sealed again (its author published it anew): this copy carries the
    // newest counter, the one the others take, so it is the one to put back. A newer point,
    // whoever wrote it, is the copy this TV keeps for the topic.
    this.lastCopies.set(topic, payload);
    this.keeper.adopt(topic);
    // Something else reached the broker on this topic while this point was opened (a replay
    // right behind it): that is what it holds now, so this copy goes back.
    if (arrival && this.arriving.get(topic) !== arrival && typeof this.keeper.arrived(topic, false, this.nowMs()) === "number") {
      this.armRepairs();
    }
    if (old && compareStamps(point.stamp, old.stamp) === 0) return;
    this.resume.set(key, point);
    this.changed();
  }

  // --- Where a media resumes --------------------------------------------------------

  /**
   * The live session of `mediaId` that another online device holds and plays or has paused:
   * one that plays before one that is paused, whatever their stamps; else the newest.
   */
  liveSession(mediaId) {
    let best = null;
    for (const s of this.sessions.values()) {
      if (s.device === this.me.id || s.lease.device !== s.device || s.media?.id !== mediaId) continue;
      if (!s.anchor || s.anchor.state === "ended" || this.availability.get(s.device) !== "online" || this.superseded(s)) continue;
      const playing = s.anchor.state === "playing";
      if (!best || playing > best.playing || (playing === best.playing && compareStamps(s.stamp, best.s.stamp) > 0)) best = { s, playing };
    }
    return best?.s ?? null;
  }

  /**
   * Where `mediaId` resumes, given its newest resume point `point` (or null): `{position,
   * device, stamp, live, playing}` (`live`: the session to continue, if a device holds it),
   * or null when nothing is worth resuming. A live session that plays is where the media
   * is, whatever the point's stamp; a paused one wins when its stamp is not older than the
   * point's, or when the point is its own device's (a pause records both: the session is the
   * one to continue). A session that ended (on any device, this TV too) after the point was
   * made leaves nothing to resume: the media finished there.
   */
  resumeFrom(mediaId, point) {
    const live = this.currentLive(mediaId, point);
    let from = null;
    if (live) {
      from = { position: this.livePosition(live), device: live.device, stamp: live.stamp, live, playing: live.anchor.state === "playing", duration: live.media.duration_ns };
    } else if (point && !point.finished) {
      from = { position: big(point.position_ns), device: point.device, stamp: point.stamp, live: null, playing: false, duration: point.media.duration_ns };
    }
    if (!from) return null;
    if (!from.playing) {
      const ended = [...this.sessions.values()].some((s) => s.media?.id === mediaId && s.anchor?.state === "ended" && compareStamps(s.stamp, from.stamp) > 0);
      if (ended) return null;
    }
    return verdict(from.position, from.duration) === "resume" ? from : null;
  }

  /** The live session of `mediaId` that a start of it continues (see `resumeFrom`), or null. */
  currentLive(mediaId, point = this.pointOf(mediaId)) {
    const live = this.liveSession(mediaId);
    const current = live && (live.anchor.state === "playing" || !point || compareStamps(point.stamp, live.stamp) <= 0 || point.device === live.device);
    return current ? live : null;
  }

  /** The newest resume point this TV holds for `mediaId`, or null. */
  pointOf(mediaId) {
    return [...this.resume.values()].find((p) => p.media.id === mediaId) ?? null;
  }

  /** Whether this TV plays `mediaId` now, or is taking it over. */
  playsHere(mediaId) {
    if (this.handoff.target?.state.media.id === mediaId) return true;
    return this.media?.id === mediaId && (this.active || this.player.playing);
  }

  // --- What the broker lacks (a node of a cluster, a bridge) --------------------------

  /**
   * Once synced, say which devices this TV holds as online, with the session stamp it holds
   * for each: the devices it lacks (its broker's node never got their retained state)
   * publish theirs again.
   */
  async ask() {
    const seen = [...this.availability]
      .filter(([d, status]) => status === "online" && d !== this.me.id)
      .slice(0, 256)
      .map(([device]) => {
        const s = this.sessions.get(device);
        return s ? { device, session: s.stamp } : { device };
      });
    await this.send(this.topic("ask"), { v: 1, device: this.me.id, seen });
  }

  /**
   * Another device asks: unless it holds this TV online with its latest session, publish
   * the copies this TV keeps again (its availability, info and session, the newest resume
   * points), after 0.1–0.4 s (later while asks keep coming); a resume point whose same copy
   * another device sends first is not sent again.
   */
  onAsk(ask) {
    if (ask.device === this.me.id || ask.device.startsWith(`${this.me.id}${HELPER_SEP}`)) return;
    const held = ask.seen.find((s) => s.device === this.me.id);
    const current = this.sessions.get(this.me.id)?.stamp;
    if (held?.session && current && compareStamps(held.session, current) === 0) return;
    const now = this.nowMs();
    let answering = false;
    for (const topic of this.lastCopies.keys()) answering = this.keeper.answer(topic, now) || answering;
    if (!answering) return;
    this.log(`${ask.device} lacks this TV's state on its broker: publishing it again`);
    this.armRepairs();
  }

  async onRoster(roster) {
    const merged = mergeRoster(this.membership.roster, roster);
    this.membership.roster = merged;
    const seen = this.opener.seen;
    this.opener = new Opener([this.keys], merged);
    this.opener.seen = seen;
    await keystore.put(`account:${this.account}`, this.membership);
    await this.resubscribe();
    this.changed();
  }

  /** Whose inbox this TV's sync goes through: its helper, subscribed to last. */
  get syncInbox() {
    const helper = `${this.me.id}${HELPER_SEP}sync`;
    return helper.length <= 64 ? helper : this.me.id;
  }

  /** The retained topics of each device the roster trusts (PROTOCOL.md, Topics). */
  rosterFilters() {
    return this.membership.roster.devices
      .filter((d) => !d.revoked)
      .flatMap((d) => [
        this.topic("+", d.device, "availability"),
        this.topic("devices", d.device, "info"),
        this.topic("sessions", d.device, "state"),
      ]);
  }

  /** Listen to the devices the roster trusts now: a newcomer's topics, a revoked one's no more. */
  async resubscribe() {
    const now = this.rosterFilters();
    const before = this.deviceFilters ?? [];
    this.deviceFilters = now;
    const added = now.filter((f) => !before.includes(f));
    const gone = before.filter((f) => !now.includes(f));
    if (!this.connected || !this.client) return;
    try {
      if (added.length) await this.client.subscribe(added);
      if (gone.length) await this.client.unsubscribe(gone);
    } catch (e) {
      this.log(`broker: cannot follow the roster's devices: ${e.message}`);
    }
  }

  async onCommand(cmd, arrivedNs, topic) {
    const key = `${cmd.from}\u0000${cmd.id}`;
    if (this.seenCommands.has(key)) return;
    this.seenCommands.set(key, Date.now());
    if (this.seenCommands.size > 1000) this.seenCommands.delete(this.seenCommands.keys().next().value);
    this.saveSeen(topic);
    const b = cmd.body;
    switch (b.type) {
      case "sync":
        if (cmd.from === this.syncInbox && cmd.id === this.syncId) {
          this.synced = true;
          this.changed();
          await this.ask();
        }
        return;
      case "play":
        if (this.anchor) await this.player.play();
        return;
      case "pause":
        if (this.anchor) this.player.pause();
        return;
      case "seek":
        if (this.anchor) await this.player.seek(big(b.position_ns));
        return;
      case "clock-probe":
        return this.onProbe(cmd.from, big(b.t1_unix_ns), arrivedNs);
      case "clock-reply":
        return this.onReply(cmd.from, b, arrivedNs);
      case "handoff-request":
        return this.onRequest(cmd.from, b.handoff, b.source, arrivedNs);
      case "handoff-offer":
        return this.onOffer(cmd.from, b, arrivedNs);
      case "handoff-accept":
        return this.onAccept(cmd.from, b, arrivedNs);
      // Only the other party of a handoff speaks for it. A refusal that crossed the switch on
      // its way comes too late: the switch is agreed, and the source gives the session up
      // when it sees this TV hold it (its late seek or pause gives way to the handoff).
      case "handoff-reject": {
        const t = this.handoff.target;
        if (t?.id === b.handoff && t.source === cmd.from && !t.switch) return this.failTarget(b.reason, false);
        return;
      }
      case "handoff-switch":
        if (this.handoff.source?.target === cmd.from) return this.onSwitch(b);
        return;
      case "handoff-cancel": {
        const s = this.handoff.source;
        if (s?.id === b.handoff && s.target === cmd.from && !s.switched) {
          this.handoff.source = null;
          return;
        }
        // The initiator gave up (its deadline passed: this TV was frozen, or its messages
        // held up): a handoff nobody waits for any more is not carried out late.
        const t = this.handoff.target;
        if (t?.id === b.handoff && t.requester === cmd.from && !t.switch) return this.failTarget(b.reason, true);
        return;
      }
      case "handoff-result":
        return this.onResult(cmd.from, b);
      case "takeover": {
        if (b.session !== this.session) return;
        // A takeover is no handoff's switch to wait for (the target of one this TV accepted
        // restarted, and started the media itself): it pauses now.
        const s = this.handoff.source;
        if (s && s.target === cmd.from && !s.switched) this.handoff.source = null;
        return this.loseLease({ device: cmd.from, epoch: b.epoch });
      }
      default:
        return;
    }
  }

  saveSeen(topic) {
    // Transient counters outlive a reload, so that a replayed command stays refused.
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => {
      const list = [...this.opener.seen].filter(([k]) => k.endsWith("/inbox") || k.endsWith("/events")).map(([k, a]) => [...k.split("\u0000"), String(a.greatest())]);
      localStorage.setItem(`seen:${this.me.id}`, JSON.stringify(list.slice(-500)));
    }, 1000);
    return topic;
  }

  // --- Clocks -------------------------------------------------------------------------

  /** Three probes, spread out (a device that just started answers the first one slowly). */
  probeSeveral(device) {
    this.probe(device);
    for (const ms of [500, 2000]) setTimeout(() => this.availability.get(device) === "online" && this.probe(device), ms);
  }

  /** A probe (QoS 0: it may be lost, as when a device announces itself a moment before it
   * listens to its inbox); one not answered within a second is sent again, twice at most. */
  probe(device, retries = 2) {
    const t1 = nowNs();
    const waiting = this.probes.get(device) ?? new Set();
    waiting.add(t1);
    this.probes.set(device, waiting);
    setTimeout(() => {
      if (!waiting.delete(t1)) return;
      if (retries > 0 && this.availability.get(device) === "online") this.probe(device, retries - 1);
    }, 1000);
    return this.command(device, { type: "clock-probe", t1_unix_ns: t1 });
  }

  onProbe(from, t1, t2) {
    const now = Date.now();
    this.replies = this.replies.filter((t) => now - t < 1000);
    if (this.replies.length >= 32) return;
    this.replies.push(now);
    return this.command(from, { type: "clock-reply", t1_unix_ns: t1, t2_unix_ns: t2, t3_unix_ns: nowNs() });
  }

  onReply(from, b, t4) {
    const t1 = big(b.t1_unix_ns);
    const waiting = this.probes.get(from);
    if (!waiting?.delete(t1)) return;
    this.record(from, t1, big(b.t2_unix_ns), big(b.t3_unix_ns), t4);
  }

  /** A clock sample of `device`: keep the one with the smallest round trip. */
  record(device, t1, t2, t3, t4) {
    const rtt = t4 - t1 - (t3 - t2);
    // Held up for a second or more (a device frozen, a link cut off), the offset is anywhere
    // within half of that: worth nothing.
    if (rtt < 0n || rtt > SECOND) return;
    let offset = (t2 - t1 + (t3 - t4)) / 2n;
    if ((offset < 0n ? -offset : offset) <= rtt / 2n) offset = 0n;
    const old = this.clocks.get(device);
    const now = nowNs();
    // `samples`: how many answers were taken, kept or not.
    const samples = (old?.samples ?? 0) + 1;
    if (!old || rtt <= old.rtt || now - old.at > CLOCK_SAMPLE_TTL_NS) {
      this.clocks.set(device, { offset, rtt, at: now, samples });
      this.changed();
    } else {
      old.samples = samples;
    }
  }

  /** `device`'s clock minus this one's (0 until measured). */
  offsetOf(device) {
    return this.clocks.get(device)?.offset ?? 0n;
  }

  /** Where a session is now, read with its device's clock. */
  livePosition(state) {
    if (!state.anchor) return null;
    // A playing session is not held at its duration: a demuxer that reads over HTTP may
    // give an early estimate (an Ogg film of 30 s said 0.64 s), and the end is told anyway
    // (the session's state says "ended").
    const duration = state.anchor.state === "playing" ? undefined : state.media?.duration_ns;
    return positionAt(state.anchor, nowNs() + this.offsetOf(state.device), duration);
  }

  // --- Playback of its own --------------------------------------------------------------

  get active() {
    return this.lease.device === this.me.id && this.anchor !== null;
  }

  /** The player changed on its own (a key press, end of stream): a new anchor. */
  async playerChanged(what) {
    if (!this.media || !this.anchor || this.handoff.target) return;
    const state = what === "ended" ? "ended" : this.player.playing ? "playing" : "paused";
    if (this.lease.device !== this.me.id) {
      // Its session moved to another device: a pause is the player catching up with that;
      // a play after it is a person pressing play, which takes the session back.
      if (state !== "playing") this.pausedSinceMoved = true;
      else if (this.pausedSinceMoved) await this.pullBack();
      return;
    }
    const pos = this.player.positionNs;
    const rate = this.player.rate ?? this.anchor.rate;
    // Events of what this device did itself (a preroll, the start at a switch) change
    // nothing the anchor does not already say.
    const predicted = positionAt(this.anchor, nowNs(), this.media.duration_ns);
    const off = pos > predicted ? pos - predicted : predicted - pos;
    if (state === this.anchor.state && rate === this.anchor.rate && off <= DRIFT_NS) return;
    // Paused, sought or a new rate while the session is being handed off: the target
    // prepared the old position, so that handoff is off (the accept carried the anchor).
    if (what !== "drift" && what !== "ended") await this.dropOutgoingHandoff("rejected");
    this.anchor = { position_ns: num(pos), at_unix_ns: nowNs(), rate, state };
    await this.publishSession();
    if (state !== "playing") await this.recordResume(pos, what === "ended");
  }

  /** Republish the anchor when playback drifted from it (stalls, buffering). */
  async tick() {
    const now = nowNs();
    const t = this.handoff.target;
    if (t && now >= t.deadline) {
      if (t.switch) await this.finishTarget(t, { latency_ns: num(t.switch.at - t.received) });
      else if (t.cold && t.prerolled === null && t.prerolls === 1) {
        // The load never prerolled: the media gave no data in time (a download that
        // stalls). It is unavailable here, whatever it does later.
        this.log(`handoff ${t.id}: the media gave no data within ${Number(HANDOFF_TIMEOUT_NS / SECOND)} s`);
        await this.failTarget("media-unavailable", true);
      } else await this.failTarget("timeout", true);
    }
    const s = this.handoff.source;
    if (s && now >= s.deadline) {
      this.handoff.source = null;
      if (s.switched) {
        // Switched, and the target never said it plays (frozen, or its player stuck): the
        // session stays here.
        await this.takeBack(s);
      } else {
        // No switch came, yet the target holds the session now: it moved all the same.
        const held = this.sessions.get(s.target);
        if (held?.session === this.session && held.lease.device === s.target && big(held.lease.epoch) >= s.epoch) await this.loseLease(held.lease);
      }
    }
    for (const [id, p] of this.handoff.pending) {
      if (now < p.deadline) continue;
      // No result came. The target may hold the session all the same (its result was lost:
      // a broker that restarted); else it never answered, and the handoff is called off
      // there too, so that a target that was only held up does not carry it out late.
      const held = this.sessions.get(p.target);
      // (At a higher epoch than the source had: a frozen target's old state is no taking.)
      const taken = p.session !== null && held?.session === p.session && held.lease.device === p.target && big(held.lease.epoch) > p.epoch;
      if (taken) {
        this.onResultLocal({ handoff: id, source: p.source, target: p.target });
      } else {
        this.command(p.target, { type: "handoff-cancel", handoff: id, reason: "target-offline" });
        this.onResultLocal({ handoff: id, source: p.source, target: p.target, failure: "target-offline" });
      }
    }
    for (const [device, st] of this.sessions) {
      const c = this.clocks.get(device);
      const old = !c || now - c.at > CLOCK_SAMPLE_TTL_NS / 2n;
      if (device !== this.me.id && st.anchor?.state === "playing" && this.availability.get(device) === "online" && old && !this.probes.get(device)?.size) {
        this.probe(device);
      }
    }
    if (!this.active || this.handoff.target || !this.player.playing) return;
    const predicted = positionAt(this.anchor, now, this.media.duration_ns);
    const d = this.player.positionNs - predicted;
    if ((d < 0n ? -d : d) > DRIFT_NS) await this.playerChanged("drift");
  }

  async beat() {
    if (this.active && this.player.playing) await this.recordResume(this.player.positionNs, false, (this.beats = (this.beats ?? 0) + 1) % 20 === 0);
  }

  /**
   * Record where this media is, on the broker (the resume rules decide what). Only the
   * holder of the session says where it is: a TV whose session moved on (a handoff's source,
   * stopped or paused later) knows an old position, and its point, stamped now, would hide
   * the newer one of the device that plays.
   */
  async recordResume(positionNs, ended = false, toBroker = true) {
    // Nor does a handoff's target before its switch: what it prerolls is not yet played.
    if (!this.media || this.lease.device !== this.me.id || this.preparing) return;
    const v = ended ? "finished" : verdict(positionNs, this.media.duration_ns);
    if (v === "not-started") return;
    if (toBroker) await this.writeResume(this.media, v === "finished" ? 0n : positionNs, this.me.id, v === "finished");
  }

  /** A resume point, with the tracks that played (this TV's, or `tracks` of another's). */
  async writeResume(media, positionNs, device, finished = false, tracks = this) {
    const key = await this.keys.mediaKey(media.id);
    const point = { v: 1, media, position_ns: num(positionNs), finished, device, stamp: this.hlc.stamp() };
    if (tracks.audio) point.audio = tracks.audio;
    if (tracks.subtitle) point.subtitle = tracks.subtitle;
    const old = this.resume.get(key);
    if (old && old.finished === finished && big(old.position_ns) === big(positionNs)) return;
    this.resume.set(key, point);
    await this.send(this.topic("media", key, "resume"), point, { retain: true });
    this.changed();
  }

  /** Start `media` here at `positionNs` as a new session (the resume prompt's answer). */
  async playHere(media, positionNs) {
    const uri = uriFor(media);
    if (!playableHere(uri)) throw new Error(`this TV cannot open ${uri ?? "a media without a URI"}`);
    const support = await this.player.support(uri);
    if (!support.ok) throw new Error(`this browser cannot play ${support.type}`);
    // Other media while this TV's session was being handed off: that handoff would move
    // what no longer plays here.
    await this.dropOutgoingHandoff("rejected");
    // Other media than a handoff to this TV loads: the person chose it here.
    if (this.handoff.target && this.handoff.target.state.media.id !== media.id) await this.failTarget("superseded", true);
    // A pause still due from a handoff's switch is not for this media.
    this.player.cancelPauseAt();
    const at = await this.player.load(uri, positionNs);
    this.player.setRate(1);
    // New media is a new session, held here.
    this.session = `${this.me.id}-${randomHex(4)}`;
    this.lease = { device: this.me.id, epoch: 0 };
    this.media = media;
    this.audio = null;
    this.subtitle = null;
    this.queue = [];
    await this.player.play();
    this.anchor = { position_ns: num(at), at_unix_ns: nowNs(), rate: 1, state: "playing" };
    await this.publishSession();
  }

  /** Another device holds my session now: pause, and say so. */
  async loseLease(lease) {
    if (!leaseAfter(lease, this.lease) || lease.device === this.me.id) return;
    // The target of the handoff this TV accepted publishes the session as soon as the switch
    // is agreed, for an instant still ahead; its switch command says when to pause, and may
    // come after the state (another topic). Pausing now would leave a gap as long as the
    // wait for that instant. Until the handoff's deadline.
    const s = this.handoff.source;
    if (s && s.target === lease.device && s.epoch === big(lease.epoch)) return;
    const t = this.handoff.target;
    const wasActive = this.lease.device === this.me.id;
    this.lease = lease;
    // Taken from here between the switch and the first frame: it never plays here.
    if (t?.switch && t.session === this.session) await this.failTarget("superseded", false);
    // A handoff of this session in flight moves what is no longer here.
    await this.dropOutgoingHandoff("superseded");
    const watched = this.handoff.source;
    this.handoff.source = null;
    // Switched to a target that lost the session before the instant (a pull): the pause
    // that was due then is due now.
    if (watched?.switched && watched.switched.at > nowNs()) this.player.pauseNow();
    if (!wasActive) return;
    // A player that plays now is told to pause, and says so; one already paused has.
    this.pausedSinceMoved = !this.player.playing;
    const name = this.nameOf(lease.device);
    this.announce(`Continued on ${name}`);
    if (this.player.playing) this.player.pause();
    if (this.anchor) this.anchor = { ...this.anchor, position_ns: num(this.player.positionNs), at_unix_ns: nowNs(), state: "paused" };
    await this.publishSession();
  }

  /**
   * Source side: what this TV plays changed before the switch (other media, a pause, a
   * seek, its session taken): the handoff in flight is refused, and its target drops it.
   */
  async dropOutgoingHandoff(reason) {
    const s = this.handoff.source;
    if (!s || s.switched) return;
    this.handoff.source = null;
    await this.command(s.target, { type: "handoff-reject", handoff: s.id, reason });
  }

  /**
   * Play was pressed here while another device holds this TV's session: continue the media
   * where it is now (the live session of it that another device holds, at its position,
   * taken over), else take this TV's own session back from its holder.
   */
  async pullBack() {
    // Once: the seek below is no second press.
    this.pausedSinceMoved = false;
    this.handoff.source = null;
    const live = this.currentLive(this.media.id);
    let [holder, session, epoch] = [this.lease.device, this.session, big(this.lease.epoch)];
    if (live) {
      const there = this.livePosition(live);
      const here = this.player.positionNs;
      if ((there > here ? there - here : here - there) > DRIFT_NS) await this.player.seek(there + PULL_LEAD_NS);
      [holder, session, epoch] = [live.device, live.session, big(live.lease.epoch)];
    }
    await this.takeOver(holder, session, epoch);
  }

  /** Pull handoff: this TV plays `session` (held by `from` at `epoch`) and holds it now; `from` pauses. */
  async takeOver(from, session, epoch) {
    this.session = session;
    this.lease = { device: this.me.id, epoch: num(epoch + 1n) };
    this.anchor = {
      position_ns: num(this.player.positionNs),
      at_unix_ns: nowNs(),
      rate: this.player.rate ?? this.anchor?.rate ?? 1,
      state: this.player.playing ? "playing" : "paused",
    };
    await this.command(from, { type: "takeover", session, epoch: num(epoch + 1n) });
    await this.publishSession();
    this.announce(`Continued here from ${this.nameOf(from)}`);
  }

  /**
   * `device` went offline. A target this TV switched to that is not yet known to play (it
   * died in the handoff): the session stays here, and this TV plays on from where it paused
   * (make-before-break: a source never stops for a target that does not play).
   */
  targetWentOffline(device) {
    const s = this.handoff.source;
    if (!s?.switched || s.target !== device) return;
    const t = this.handoff.target;
    // It was handing the session back here: that is off, and it is taken back below.
    if (t && t.source === device && !t.switch) this.failTarget("rejected", false);
    this.handoff.source = null;
    this.log(`handoff ${s.id}: the target ${device} went offline at the switch: playing on here`);
    return this.takeBack(s);
  }

  /** A switched handoff whose target did not play: the session stays here, and plays on. */
  async takeBack(s) {
    // The session moved on since (another handoff): not this TV's to take.
    if (this.lease.device !== s.target || big(this.lease.epoch) !== s.epoch) return;
    this.lease = { device: this.me.id, epoch: num(s.epoch + 1n) };
    const rate = this.anchor?.rate ?? 1;
    // The pause at the switch instant may be still to come: then it never comes. The anchor
    // first: the player's "play" is no news then.
    this.player.cancelPauseAt();
    // From where it paused (a handoff back here that it dropped may have moved the player).
    const paused = s.switched.position;
    const off = paused === undefined ? 0n : this.player.positionNs - paused;
    if (!this.player.playing && (off > DRIFT_NS || off < -DRIFT_NS)) await this.player.seek(paused);
    this.anchor = { position_ns: num(this.player.positionNs), at_unix_ns: nowNs(), rate, state: "playing" };
    if (!this.player.playing) await this.player.play();
    await this.publishSession();
    this.announce(`${this.nameOf(s.target)} did not continue: playing on here`);
  }

  nameOf(device) {
    return this.info.get(device)?.device.name ?? this.membership.roster.devices.find((d) => d.device === device)?.name ?? device;
  }

  // --- Handoff: initiator ---------------------------------------------------------------

  /** Ask `target` to take over the session of `source`; resolves with the result. */
  requestHandoff(target, source) {
    this.seq += 1;
    const id = `h-${this.me.id.slice(0, 24)}-${(nowNs() / MS).toString(16)}-${this.instance}${this.seq}`;
    const state = this.sessions.get(source);
    // A source whose media ended (or that has none) has nothing to move: said at once.
    const nothing = state && (!state.media || !state.anchor || state.anchor.state === "ended");
    return new Promise((resolve) => {
      // The source's session as asked for: a target that holds it when no result came has
      // taken it over all the same.
      this.handoff.pending.set(id, { target, source, session: state?.session ?? null, epoch: state ? big(state.lease.epoch) : null, deadline: nowNs() + HANDOFF_TIMEOUT_NS + 2n * SECOND, resolve });
      if (nothing) this.onResultLocal({ handoff: id, source, target, failure: "nothing-playing" });
      else if (target === this.me.id) this.onRequest(this.me.id, id, source, nowNs());
      else if (this.availability.get(target) !== "online") this.onResultLocal({ handoff: id, source, target, failure: "target-offline" });
      else this.command(target, { type: "handoff-request", handoff: id, source });
    });
  }

  onResult(from, r) {
    // The target of a handoff this TV switched (or asked for) plays: nothing more to watch.
    const s = this.handoff.source;
    if (!r.failure && s?.id === r.handoff && s.target === from && (s.switched || this.handoff.pending.has(r.handoff))) this.handoff.source = null;
    if (this.handoff.pending.has(r.handoff)) this.onResultLocal(r);
  }

  onResultLocal(r) {
    const p = this.handoff.pending.get(r.handoff);
    this.handoff.pending.delete(r.handoff);
    this.dispatchEvent(new CustomEvent("handoff", { detail: r }));
    p?.resolve(r);
  }

  // --- Handoff: target ------------------------------------------------------------------

  async onRequest(requester, id, source, receivedNs) {
    const fail = (failure) => this.sendResult(requester, { handoff: id, source, target: this.me.id, failure });
    // A source that switched and only watches its target is not busy.
    if (this.handoff.target || (this.handoff.source && !this.handoff.source.switched)) return fail("target-busy");
    const state = this.sessions.get(source);
    if (!state) return fail("rejected");
    if (!state.media || !state.anchor || state.anchor.state === "ended") return fail("nothing-playing");
    // This TV holds that session already (it pulled it back meanwhile).
    if (state.session === this.session && this.lease.device === this.me.id) return fail("superseded");
    const uri = uriFor(state.media);
    if (!playableHere(uri)) return fail("media-unavailable");
    // Already playing this media: nothing to load, only a preroll. Else the load replaces
    // what the player had (a media that played to its end is loaded again).
    const loaded = this.media?.id === state.media.id && this.anchor !== null && this.anchor.state !== "ended" && this.player.uri === uri;
    const t = {
      id,
      requester,
      source,
      state,
      session: state.session,
      epoch: big(state.lease.epoch) + 1n,
      received: receivedNs,
      deadline: receivedNs + HANDOFF_TIMEOUT_NS,
      offset: null,
      rtt: null,
      anchor: null,
      prerolled: null,
      asked: nowNs(),
      took: 0n,
      prerolls: 1,
      switch: null,
      cold: !loaded,
    };
    this.handoff.target = t;
    // A media this browser cannot show is refused before the offer, so before the source
    // pauses: what its extension or its first bytes say, asked of the browser.
    const support = await this.player.support(uri);
    if (this.handoff.target !== t) return;
    if (!support.ok) {
      this.handoff.target = null;
      this.log(`handoff: this browser cannot play ${support.type} (${uri})`);
      await fail("unsupported-media");
      this.announce(`Could not continue from ${this.nameOf(source)}: this TV cannot play this kind of media`);
      return;
    }
    await this.command(source, { type: "handoff-offer", handoff: id, session: t.session, epoch: num(t.epoch), t1_unix_ns: nowNs() });
    this.announce(`Taking over from ${this.nameOf(source)}…`);
    const ahead = PREROLL_LEAD_NS + this.player.startLagNs;
    const lead = positionAt(state.anchor, nowNs() + this.offsetOf(source) + ahead, state.media.duration_ns);
    try {
      const at = await this.player.load(uri, lead);
      if (this.handoff.target !== t) return;
      // A picture it cannot decode: audio only, a black screen. Still before the switch.
      if (support.video && !this.player.showsVideo) {
        this.log(`handoff: ${uri} has a picture this browser does not decode (videoWidth 0)`);
        return await this.failTarget("unsupported-media", true);
      }
      this.prerolled(t, at);
    } catch (e) {
      if (this.handoff.target === t) {
        this.log(`handoff: cannot play ${uri}: ${e.message}`);
        await this.failTarget("media-unavailable", true);
      }
    }
  }

  async sendResult(to, r) {
    if (to === this.me.id) this.onResultLocal(r);
    else {
      await this.command(to, { type: "handoff-result", ...r });
      this.dispatchEvent(new CustomEvent("handoff", { detail: r }));
    }
  }

  onAccept(from, b, t4) {
    const t = this.handoff.target;
    if (!t || t.id !== b.handoff || from !== t.source) return;
    // The offer and accept are one more clock sample; the switch is planned with the best
    // one known (the smallest round trip): a source busy when the offer arrives answers
    // late, and its sample alone would put the switch off by half of that.
    this.record(from, big(b.t1_unix_ns), big(b.t2_unix_ns), big(b.t3_unix_ns), t4);
    const best = this.clocks.get(from) ?? { offset: 0n, rtt: null };
    t.offset = best.offset;
    t.rtt = best.rtt;
    t.anchor = b.anchor;
    return this.trySwitch(t);
  }

  prerolled(t, positionNs) {
    if (this.handoff.target !== t || t.switch) return;
    t.prerolled = positionNs;
    t.took = nowNs() - t.asked;
    return this.trySwitch(t);
  }

  async trySwitch(t) {
    if (this.handoff.target !== t || t.switch || t.anchor === null || t.offset === null || t.prerolled === null) return;
    const now = nowNs();
    const mediaId = t.state.media.id;
    // The source plays other media now than the one loaded here.
    const current = this.sessions.get(t.source);
    if (current?.media && current.media.id !== mediaId) return this.failTarget("rejected", true);
    const others = [...this.sessions.values()].filter((s) => s.device !== this.me.id && s.lease.device === s.device);
    // Another device took the session meanwhile (a pull): this handoff lost.
    const taken = others.some((s) => s.session === t.session && big(s.lease.epoch) >= t.epoch);
    // Or started that media since the request came (the source may have gone quiet): the
    // person continues there, and this handoff would make two players.
    const startedElsewhere = others.some(
      (s) =>
        s.device !== t.source &&
        s.media?.id === mediaId &&
        s.anchor?.state === "playing" &&
        this.availability.get(s.device) === "online" &&
        big(s.stamp.wall_ns) >= t.received + this.offsetOf(s.device) &&
        !this.superseded(s),
    );
    if (taken || startedElsewhere) return this.failTarget("superseded", true);
    const a = t.anchor;
    const playing = a.state === "playing";
    // The player starts its clock early by its start lag: the instant must leave room for it.
    const margin = SWITCH_MARGIN_NS + this.player.startLagNs;
    // The instant (this clock) at which the source reaches the prerolled position.
    const at = playing
      ? big(a.at_unix_ns) + BigInt(Math.round(Number(t.prerolled - big(a.position_ns)) / a.rate)) - t.offset
      : now + margin;
    const pausedOff = !playing && (t.prerolled > big(a.position_ns) ? t.prerolled - big(a.position_ns) : big(a.position_ns) - t.prerolled) > 20n * MS;
    if (at < now + margin || pausedOff || at > now + MAX_SWITCH_WAIT_NS) {
      // Slower than predicted (or the clocks disagree): seek again, further ahead.
      const lead = maxBig(PREROLL_LEAD_NS, (t.took * 3n) / 2n + margin);
      const position = playing ? positionAt(a, now + t.offset + lead, t.state.media.duration_ns) : big(a.position_ns);
      t.prerolled = null;
      t.asked = now;
      t.prerolls += 1;
      try {
        this.prerolled(t, await this.player.preroll(position));
      } catch (e) {
        await this.failTarget("media-unavailable", true);
      }
      return;
    }
    t.switch = { at, position: t.prerolled };
    await this.command(t.source, { type: "handoff-switch", handoff: t.id, at_unix_ns: at + t.offset, position_ns: num(t.prerolled) });
    // It plays at the rate of the source's anchor (a film watched at x1.5 goes on so).
    this.player.setRate(a.rate);
    const shown = this.player.playAt(at);
    // The session is this device's from the switch instant on.
    const s = t.state;
    this.media = s.media;
    this.audio = s.audio ?? null;
    this.subtitle = s.subtitle ?? null;
    this.queue = s.queue ?? [];
    this.session = t.session;
    // The device it came from is no suggestion to continue on.
    this.suggest.delete(t.source);
    this.lease = { device: this.me.id, epoch: num(t.epoch) };
    this.anchor = { position_ns: num(t.prerolled), at_unix_ns: at, rate: a.rate, state: "playing" };
    await this.publishSession();
    // Nothing (a failed play) when the load was dropped meanwhile: its session was taken.
    const first = await shown.catch(() => null);
    if (!first || this.handoff.target !== t) return;
    const expected = positionAt(a, first.shownNs + t.offset, s.media.duration_ns);
    // The anchor from the frame shown, should the start have been late.
    const planned = positionAt(this.anchor, first.shownNs, s.media.duration_ns);
    const late = planned - first.positionNs;
    if (late > 5n * MS || late < -5n * MS) {
      this.anchor = { ...this.anchor, position_ns: num(first.positionNs), at_unix_ns: first.shownNs };
      await this.publishSession();
    }
    await this.finishTarget(t, {
      latency_ns: num(first.shownNs - t.received),
      position_error_ns: num(first.positionNs - expected),
    });
    this.announce(`Continued from ${this.nameOf(t.source)} at ${clockText(first.positionNs)}`);
  }

  async finishTarget(t, fields) {
    this.handoff.target = null;
    const r = {
      handoff: t.id,
      source: t.source,
      target: this.me.id,
      ...fields,
      clock_offset_ns: t.offset === null ? undefined : num(t.offset),
      rtt_ns: t.rtt === null ? undefined : num(t.rtt),
      prerolls: t.prerolls,
    };
    // The source watches for it (until 2 s past the switch instant): a target that never
    // says it plays leaves the session with the source.
    if (t.source !== t.requester && t.source !== this.me.id) await this.command(t.source, { type: "handoff-result", ...r });
    await this.sendResult(t.requester, r);
  }

  async failTarget(reason, cancelSource) {
    const t = this.handoff.target;
    if (!t) return;
    this.handoff.target = null;
    if (cancelSource) await this.command(t.source, { type: "handoff-cancel", handoff: t.id, reason });
    if (t.cold) {
      // What the player had gave way to the load, which is dropped now: it has nothing (a
      // later handoff of this media loads it again).
      this.player.unload();
      this.media = null;
      this.anchor = null;
      this.audio = null;
      this.subtitle = null;
      await this.publishSession();
    } else if (this.active) {
      // The preroll paused or moved what plays here: its anchor says so.
      await this.playerChanged("drift");
    }
    await this.sendResult(t.requester, {
      handoff: t.id,
      source: t.source,
      target: this.me.id,
      failure: reason,
      clock_offset_ns: t.offset === null ? undefined : num(t.offset),
      rtt_ns: t.rtt === null ? undefined : num(t.rtt),
      prerolls: t.prerolls,
    });
    this.announce(`Could not continue from ${this.nameOf(t.source)}: ${reason.replaceAll("-", " ")}`);
  }

  // --- Handoff: source ------------------------------------------------------------------

  async onOffer(from, b, t2) {
    const reject = (reason) => this.command(from, { type: "handoff-reject", handoff: b.handoff, reason });
    if (!this.active || b.session !== this.session) return reject("rejected");
    if (big(b.epoch) <= big(this.lease.epoch)) return reject("superseded");
    const s = this.handoff.source;
    if (s && s.id !== b.handoff && !s.switched && s.deadline > nowNs()) return reject("superseded");
    this.handoff.source = { id: b.handoff, target: from, epoch: big(b.epoch), deadline: nowNs() + HANDOFF_TIMEOUT_NS + SECOND };
    const now = nowNs();
    const pos = this.player.playing ? this.player.positionNs : big(this.anchor.position_ns);
    const anchor = { position_ns: num(pos), at_unix_ns: now, rate: this.anchor.rate, state: this.player.playing ? "playing" : "paused" };
    await this.command(from, { type: "handoff-accept", handoff: b.handoff, t1_unix_ns: big(b.t1_unix_ns), t2_unix_ns: t2, t3_unix_ns: nowNs(), anchor });
  }

  /** Source side: the target plays from `at_unix_ns` (this TV's clock); this TV pauses then. */
  async onSwitch(b) {
    const s = this.handoff.source;
    if (!s || s.id !== b.handoff || s.switched) return;
    const at = big(b.at_unix_ns);
    // Until 2 s past the instant this TV watches its target: one that goes offline, or
    // never says it plays, leaves the session here (see `takeBack`).
    s.switched = { at };
    s.deadline = maxBig(at, nowNs()) + SWITCH_WATCH_NS;
    this.pausedSinceMoved = false;
    // No resume point of the switch: the target says where the session is from its first
    // frame, and a point stamped when this TV handles the switch (late, if it was frozen)
    // would hide what the target made of it since.
    this.lease = { device: s.target, epoch: num(s.epoch) };
    // False: taken back before the instant (the target went offline), and it plays on.
    if (!(await this.player.pauseAt(at))) return;
    // Where the picture stopped, which is where the target goes on.
    const position = this.player.positionNs;
    s.switched.position = position;
    const now = nowNs();
    this.anchor = { ...this.anchor, position_ns: num(position), at_unix_ns: at < now ? at : now, state: "paused" };
    await this.publishSession();
    if (this.lease.device !== this.me.id) this.announce(`Continued on ${this.nameOf(this.lease.device)} at ${clockText(position)}`);
  }
}

/** 754 s as people read it: "12:34" (or "1:02:03"). */
export function clockText(ns) {
  const total = Math.max(0, Math.floor(Number(big(ns) / SECOND)));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** "12 minutes 34 seconds", for screen readers. */
export function spokenTime(ns) {
  const total = Math.max(0, Math.floor(Number(big(ns) / SECOND)));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const part = (n, w) => (n ? `${n} ${w}${n === 1 ? "" : "s"}` : null);
  return [part(h, "hour"), part(m, "minute"), part(s, "second")].filter(Boolean).join(" ") || "0 seconds";
}

