// Sealed envelopes (docs/PROTOCOL.md, "Sealed envelope"): account keys, associated data,
// sealing and signing, and the opener, which refuses in the documented order of checks
// with the documented codes. WebCrypto only (HKDF, AES-GCM, HMAC, Ed25519).

import { b64url, concat, fromB64url, hex, u64be, utf8 } from "./bytes.js";
import { toBig } from "./json.js";
import { decode as decodeWire, HELPER_SEP, WireError } from "./wire.js";
import { subtle, webcrypto } from "./crypto.js";


/** A refusal: `code` is one of the documented codes; `wire` the inner wire error, if any. */
export class SealError extends Error {
  constructor(code, message, wire) {
    super(message);
    this.code = code;
    this.wire = wire;
  }
}

/** The account secret as an HKDF key: from its 32 bytes, or as a (non-extractable) key. */
export const secretKey = (secret) =>
  secret instanceof Uint8Array ? subtle.importKey("raw", secret, "HKDF", false, ["deriveBits"]) : secret;

async function hkdf(secret, info) {
  const ikm = await secretKey(secret);
  const bits = await subtle.deriveBits(
    { name: "HKDF", hash: "SHA-256", salt: utf8("continuity v1"), info: utf8(info) },
    ikm,
    256,
  );
  return new Uint8Array(bits);
}

/** The keys of an account secret (32 bytes, or its HKDF key): key id, sealing key, media-key HMAC. */
export async function deriveKeys(secret) {
  const keyId = hex((await hkdf(secret, "continuity v1 key-id")).slice(0, 8));
  const seal = await subtle.importKey("raw", await hkdf(secret, "continuity v1 seal"), "AES-GCM", false, [
    "encrypt",
    "decrypt",
  ]);
  const media = await subtle.importKey(
    "raw",
    await hkdf(secret, "continuity v1 media-key"),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return {
    keyId,
    seal,
    /** The resume topic's key of a media id in a sealed account. */
    async mediaKey(mediaId) {
      return hex(new Uint8Array(await subtle.sign("HMAC", media, utf8(mediaId))).slice(0, 16));
    },
  };
}

/** `continuity-v1` 0x00 topic 0x00 sender 0x00 counter (8 bytes, big-endian). */
export function associatedData(topic, sender, counter) {
  const z = new Uint8Array([0]);
  return concat(utf8("continuity-v1"), z, utf8(topic), z, utf8(sender), z, u64be(counter));
}

/** An Ed25519 public key (base64url, as in the roster) for verifying. */
export const verifier = (publicKey) =>
  subtle.importKey("raw", fromB64url(publicKey), { name: "Ed25519" }, false, ["verify"]);

/**
 * Seal and sign `plaintext` (bytes) for `topic`. `signer` is an Ed25519 private CryptoKey;
 * `nonce` 12 bytes (fresh random ones unless a test vector gives them).
 */
export async function seal(keys, signer, topic, sender, counter, plaintext, nonce) {
  nonce ??= webcrypto.getRandomValues(new Uint8Array(12));
  const aad = associatedData(topic, sender, counter);
  const ct = new Uint8Array(
    await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, keys.seal, plaintext),
  );
  const sig = new Uint8Array(await subtle.sign("Ed25519", signer, concat(aad, nonce, ct)));
  return {
    v: 1,
    sealed: {
      alg: "A256GCM",
      key_id: keys.keyId,
      sender,
      counter: toBig(counter) <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(counter) : BigInt(counter),
      nonce: b64url(nonce),
      ct: b64url(ct),
      sig: b64url(sig),
    },
  };
}

/** Who a message says it is, where it says so (command `from`, event and ask `device`, info/state topic). */
function speaksFor(msg) {
  if (msg.kind === "command") return msg.body.from;
  if (msg.kind === "event") return msg.body.device;
  if (msg.kind === "ask") return msg.body.device;
  if (msg.topic.kind === "info" || msg.topic.kind === "state") return msg.topic.device;
  return null;
}

const speaksAs = (sender, claimed) => claimed === sender || claimed.startsWith(`${sender}${HELPER_SEP}`);

/**
 * How far below the greatest counter accepted on a transient topic a message may come and
 * still be taken in (the sender's microseconds: 5 s). MQTT orders a client's messages on a
 * topic only within one QoS; devices send clock probes at QoS 0 and other commands at QoS 1.
 */
export const LATE_WINDOW = 5000000n;
const LATE_KEPT = 64;

/**
 * The counters accepted from one sender on one topic: `floor` (nothing at or below it on a
 * transient topic, nothing below it on a retained one) and `recent`, the counters accepted
 * above it on a transient topic, ascending.
 */
class Accepted {
  constructor() {
    this.floor = 0n;
    this.recent = [];
  }

  greatest() {
    return this.recent.length ? this.recent[this.recent.length - 1] : this.floor;
  }

  fresh(counter, retained) {
    if (retained) return counter >= this.floor;
    return counter > this.floor && counter + LATE_WINDOW > this.greatest() && !this.recent.includes(counter);
  }

  accept(counter, retained) {
    if (retained) {
      if (counter > this.floor) this.floor = counter;
      return;
    }
    if (!this.recent.includes(counter)) {
      this.recent.push(counter);
      this.recent.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    }
    const greatest = this.greatest();
    let keepFrom = this.recent.findIndex((c) => c + LATE_WINDOW > greatest);
    if (keepFrom < 0) keepFrom = this.recent.length;
    keepFrom = Math.max(keepFrom, this.recent.length - LATE_KEPT);
    if (keepFrom > 0) {
      const dropped = this.recent[keepFrom - 1];
      if (dropped > this.floor) this.floor = dropped;
      this.recent.splice(0, keepFrom);
    }
  }
}

/**
 * What a device of a sealed account takes in: it holds `keys` (a list of deriveKeys results)
 * and trusts the roster's devices. `decode(topic, bytes)` returns the decoded plain message
 * or throws a SealError.
 */
export class Opener {
  constructor(keys, roster) {
    this.keys = keys;
    this.signers = new Map(roster.devices.map((d) => [d.device, d.revoked ? null : d.public_key]));
    this.seen = new Map();
  }

  /** The receiver has taken `counter` from `sender` on `topic` before. */
  remember(sender, topic, counter) {
    const k = `${sender}\u0000${topic}`;
    const c = toBig(counter);
    if (!this.seen.has(k)) this.seen.set(k, new Accepted());
    const a = this.seen.get(k);
    if (c > a.floor) a.floor = c;
    a.recent = a.recent.filter((r) => r > c);
  }

  async decode(topic, payload) {
    let msg;
    try {
      msg = decodeWire(topic, payload);
    } catch (e) {
      if (e instanceof WireError) throw new SealError(e.code, e.message, e);
      throw e;
    }
    if (msg.kind === "sealed") return this.open(topic, msg.body);
    if (msg.kind === "availability") return msg;
    if (msg.kind === "cleared") {
      if (msg.topic.kind === "availability") return msg;
      throw new SealError("unsigned-clear", "an unsigned clear of retained state refused: this account is sealed");
    }
    throw new SealError("plaintext", "plain (unsealed) message refused: this account is sealed");
  }

  async open(topic, env) {
    const s = env.sealed;
    const nonce = fromB64url(s.nonce);
    const ct = fromB64url(s.ct);
    const sig = fromB64url(s.sig);
    for (const [name, v] of [
      ["nonce", nonce],
      ["ct", ct],
      ["sig", sig],
    ]) {
      if (v === null) throw new SealError("encoding", `'${name}' is not valid base64url`);
    }
    if (!this.signers.has(s.sender)) {
      throw new SealError("unknown-signer", `'${s.sender}' is not a paired device of this account`);
    }
    const publicKey = this.signers.get(s.sender);
    if (publicKey === null) throw new SealError("revoked", `'${s.sender}' was revoked`);
    const aad = associatedData(topic, s.sender, s.counter);
    const ok = await subtle.verify("Ed25519", await verifier(publicKey), sig, concat(aad, nonce, ct));
    if (!ok) throw new SealError("bad-signature", `the signature of '${s.sender}' does not verify`);
    const keys = this.keys.find((k) => k.keyId === s.key_id);
    if (!keys) throw new SealError("unknown-key", `sealed with key '${s.key_id}', which this device does not have`);
    let plain;
    try {
      plain = new Uint8Array(
        await subtle.decrypt({ name: "AES-GCM", iv: nonce, additionalData: aad }, keys.seal, ct),
      );
    } catch {
      throw new SealError("open", "does not open: wrong key, altered, or moved to another topic or sender");
    }
    let msg;
    try {
      msg = decodeWire(topic, plain);
    } catch (e) {
      if (e instanceof WireError) throw new SealError("inner", `the sealed content is not a valid message: ${e.message}`, e);
      throw e;
    }
    const k = `${s.sender}\u0000${topic}`;
    const counter = toBig(s.counter);
    const retained = msg.topic.retained;
    const seen = this.seen.get(k);
    if (seen && !seen.fresh(counter, retained)) {
      throw new SealError("replay", `replayed or old: counter ${counter} from '${s.sender}', already saw ${seen.greatest()}`);
    }
    const claimed = speaksFor(msg);
    if (claimed !== null && !speaksAs(s.sender, claimed)) {
      throw new SealError("impersonation", `sent as '${claimed}' but sealed and signed by '${s.sender}'`);
    }
    if (!this.seen.has(k)) this.seen.set(k, new Accepted());
    this.seen.get(k).accept(counter, retained);
    return msg;
  }
}

