// Pairing (docs/PROTOCOL.md, "Pairing"): commitments, the transcript, the code, the
// exchange key and its seals, and the messages' encoding, with WebCrypto's X25519 and
// Ed25519. Key material is imported from raw bytes through PKCS#8 (RFC 8410), which every
// WebCrypto implementation takes.

import { b64url, concat, fromB64url, u32be, utf8 } from "./bytes.js";
import { parse, stringify } from "./json.js";
import { subtle, webcrypto } from "./crypto.js";


// PKCS#8 v1 prefixes of a 32-byte private key (RFC 8410).
const PKCS8_X25519 = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20);
const PKCS8_ED25519 = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20);

/** A fresh X25519 key pair: {private: CryptoKey, public: 32 bytes}. */
export async function x25519() {
  const pair = await subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  return { private: pair.privateKey, public: new Uint8Array(await subtle.exportKey("raw", pair.publicKey)) };
}

/** An X25519 key pair from its 32 private bytes (test vectors). */
export async function x25519FromPrivate(bytes) {
  const priv = await subtle.importKey("pkcs8", concat(PKCS8_X25519, bytes), { name: "X25519" }, true, ["deriveBits"]);
  const jwk = await subtle.exportKey("jwk", priv);
  return { private: priv, public: fromB64url(jwk.x) };
}

/** The 32-byte X25519 shared secret. */
export async function agree(privateKey, peerPublic) {
  const peer = await subtle.importKey("raw", peerPublic, { name: "X25519" }, false, []);
  return new Uint8Array(await subtle.deriveBits({ name: "X25519", public: peer }, privateKey, 256));
}

/** An Ed25519 signing key from its 32-byte seed. */
export const ed25519Signer = (seed, extractable = false) =>
  subtle.importKey("pkcs8", concat(PKCS8_ED25519, seed), { name: "Ed25519" }, extractable, ["sign"]);

/** The base64url public key (as in the roster) of an Ed25519 seed. */
export async function ed25519Public(seed) {
  const jwk = await subtle.exportKey("jwk", await ed25519Signer(seed, true));
  return jwk.x;
}

/** base64url(SHA-256("continuity-v1 pair commit" 0x00 || X25519 key || nonce)). */
export async function commitment(x25519Public, nonce) {
  const m = concat(utf8("continuity-v1 pair commit"), Uint8Array.of(0), x25519Public, nonce);
  return b64url(new Uint8Array(await subtle.digest("SHA-256", m)));
}

/** The transcript's bytes: the label, then each of the nine parts as length (4 bytes) || bytes. */
export function transcriptInput(parts) {
  if (parts.length !== 9) throw new Error("the transcript has nine parts");
  return concat(utf8("continuity-v1 pair transcript"), Uint8Array.of(0), ...parts.flatMap((p) => [u32be(p.length), p]));
}

/** The six-digit code of a transcript hash, as people read it: "123 456". */
export function codeOf(hash) {
  const n = new DataView(hash.buffer, hash.byteOffset).getUint32(0) % 1000000;
  const s = String(n).padStart(6, "0");
  return `${s.slice(0, 3)} ${s.slice(3)}`;
}

/** HKDF-SHA256(salt = transcript hash, ikm = shared secret, info "continuity-v1 pair key"). */
export async function exchangeKey(hash, shared) {
  const ikm = await subtle.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
  const bits = await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: hash, info: utf8("continuity-v1 pair key") }, ikm, 256);
  return new Uint8Array(bits);
}

const aes = (key) => subtle.importKey("raw", key, "AES-GCM", false, ["encrypt", "decrypt"]);

/** base64url(nonce || AES-256-GCM(key, nonce, plain, aad = label)). */
export async function sealWith(key, label, plain, nonce) {
  nonce ??= webcrypto.getRandomValues(new Uint8Array(12));
  const ct = await subtle.encrypt({ name: "AES-GCM", iv: nonce, additionalData: utf8(label) }, await aes(key), plain);
  return b64url(concat(nonce, new Uint8Array(ct)));
}

/** The inverse of sealWith; throws when it does not open. */
export async function openWith(key, label, sealed) {
  const bytes = fromB64url(sealed);
  if (bytes === null || bytes.length < 28) throw new Error("does not open");
  const plain = await subtle.decrypt(
    { name: "AES-GCM", iv: bytes.slice(0, 12), additionalData: utf8(label) },
    await aes(key),
    bytes.slice(12),
  );
  return new Uint8Array(plain);
}

/** A pairing message's bytes: "v": 1, then its members in order (`type` first). */
export const encode = (msg) => stringify({ v: 1, ...msg });

/** Decode a pairing message; throws unless it is an object with "v": 1 and a `type`. */
export function decode(payload) {
  if (payload.length > 64 * 1024) throw new Error("too large");
  const v = parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("not a JSON object");
  if (!("v" in v)) throw new Error('no "v"');
  if (v.v !== 1) throw new Error(`version ${v.v}: this device speaks version 1`);
  if (typeof v.type !== "string") throw new Error("no type");
  const { v: _, ...msg } = v;
  return msg;
}
