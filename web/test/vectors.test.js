// The JavaScript contract module against the shared vectors in tests/vectors/: every
// message vector gets its verdict, the worked envelope is reproduced byte for byte and each
// refusal gets its code, and the pairing exchange is recomputed from its inputs.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { b64url, fromB64url, fromHex, hex, utf8 } from "../contract/bytes.js";
import { parse, stringify } from "../contract/json.js";
import { decode, deviceIdProblem, idProblem, WireError } from "../contract/wire.js";
import { associatedData, deriveKeys, LATE_WINDOW, Opener, seal } from "../contract/seal.js";
import * as pairing from "../contract/pairing.js";
import { subtle } from "../contract/crypto.js";

const vectors = (name) =>
  parse(readFileSync(fileURLToPath(new URL(`../../tests/vectors/${name}`, import.meta.url)), "utf8"));


/** The plain media key: SHA-256("continuity media-key v1" 0x00 id), first 16 bytes, hex. */
async function plainMediaKey(id) {
  const d = new Uint8Array(await subtle.digest("SHA-256", new Uint8Array([...utf8("continuity media-key v1"), 0, ...utf8(id)])));
  return hex(d.slice(0, 16));
}

function payloadOf(c) {
  if (c.payload_text !== undefined) {
    let text = c.payload_text;
    if (c.pad_to !== undefined) {
      const at = text.lastIndexOf("}");
      text = text.slice(0, at) + " ".repeat(Number(c.pad_to) - utf8(text).length) + text.slice(at);
    }
    return utf8(text);
  }
  return utf8(stringify(c.payload));
}

test("every message vector gets its verdict", async () => {
  const doc = vectors("messages.json");
  assert.ok(doc.cases.length >= 40);
  const failures = [];
  for (const c of doc.cases) {
    const keys = new Map();
    const id = c.payload?.media?.id;
    if (typeof id === "string") keys.set(id, await plainMediaKey(id));
    let result;
    try {
      result = decode(c.topic, payloadOf(c), (m) => keys.get(m));
    } catch (e) {
      if (!(e instanceof WireError)) throw e;
      result = e;
    }
    const refused = result instanceof WireError;
    if (c.valid && refused) failures.push(`${c.name}: should decode, got ${result.message}`);
    if (!c.valid && !refused) failures.push(`${c.name}: should fail, decoded`);
    if (!c.valid && refused) {
      if (result.code !== c.error) failures.push(`${c.name}: want ${c.error}, got ${result.code} (${result.message})`);
      if (c.field !== undefined && result.field !== c.field) {
        failures.push(`${c.name}: want field ${c.field}, got ${result.field} (${result.message})`);
      }
    }
  }
  assert.deepEqual(failures, []);
});

test("the worked envelope is reproduced byte for byte and opens", async () => {
  const v = vectors("envelope.json");
  const keys = await deriveKeys(fromHex(v.secret_hex));
  assert.equal(keys.keyId, v.key_id);
  assert.equal(await keys.mediaKey(v.media_id), v.media_key);
  assert.equal(hex(associatedData(v.topic, v.sender, v.counter)), v.aad_hex);
  const signer = await pairing.ed25519Signer(fromHex(v.sender_ed25519_seed_hex));
  assert.equal(await pairing.ed25519Public(fromHex(v.sender_ed25519_seed_hex)), v.sender_public_key);
  const env = await seal(keys, signer, v.topic, v.sender, v.counter, utf8(v.plaintext), fromHex(v.nonce_hex));
  // Same members and values (the vector file keeps its members sorted; the bytes that
  // matter, ct and sig, are compared whole).
  assert.deepEqual(parse(stringify(env)), v.envelope);
  const opener = new Opener([keys], v.receiver_roster);
  const msg = await opener.decode(v.topic, utf8(stringify(v.envelope)));
  assert.equal(msg.kind, "state");
  assert.equal(msg.body.device, "phone-1");
});

test("each envelope refusal gets its code", async () => {
  const v = vectors("envelope.json");
  const keys = await deriveKeys(fromHex(v.secret_hex));
  const failures = [];
  for (const c of v.refusals) {
    const opener = new Opener([keys], v.receiver_roster);
    const payload = utf8(c.payload_text);
    if (c.seen_counter !== null) opener.remember(parse(c.payload_text).sealed.sender, c.topic, c.seen_counter);
    try {
      await opener.decode(c.topic, payload);
      failures.push(`${c.name}: taken`);
    } catch (e) {
      if (e.code !== c.code) failures.push(`${c.name}: want ${c.code}, got ${e.code} (${e.message})`);
    }
  }
  assert.deepEqual(failures, []);
});

test("the pairing exchange is recomputed from its inputs, byte for byte", async () => {
  const v = vectors("pairing.json");
  const H = v.host;
  const J = v.joiner;
  assert.equal(await pairing.ed25519Public(fromHex(H.ed25519_seed_hex)), H.public_key);
  assert.equal(await pairing.ed25519Public(fromHex(J.ed25519_seed_hex)), J.public_key);
  const hostX = await pairing.x25519FromPrivate(fromHex(H.x25519_private_hex));
  const joinerX = await pairing.x25519FromPrivate(fromHex(J.x25519_private_hex));
  assert.equal(b64url(hostX.public), H.x25519_public);
  assert.equal(b64url(joinerX.public), J.x25519_public);
  const exchange = `x${H.exchange_random_hex}`;
  assert.equal(exchange, v.exchange);
  const input = pairing.transcriptInput([
    utf8(exchange),
    utf8(H.device),
    utf8(H.public_key),
    utf8(J.device),
    utf8(J.public_key),
    hostX.public,
    joinerX.public,
    fromHex(H.nonce_hex),
    fromHex(J.nonce_hex),
  ]);
  assert.equal(hex(input), v.transcript_input_hex);
  const hash = new Uint8Array(await subtle.digest("SHA-256", input));
  assert.equal(hex(hash), v.transcript_sha256_hex);
  assert.equal(pairing.codeOf(hash), v.code);
  const shared = await pairing.agree(hostX.private, joinerX.public);
  assert.equal(hex(shared), v.x25519_shared_hex);
  assert.equal(hex(await pairing.agree(joinerX.private, hostX.public)), v.x25519_shared_hex);
  const key = await pairing.exchangeKey(hash, shared);
  assert.equal(hex(key), v.exchange_key_hex);

  // The six messages, as each side sends them.
  const expires = BigInt(v.now_unix_ns) + BigInt(v.ttl_ns);
  const sent = [
    pairing.encode({ type: "hello", exchange, host: { device: H.device, name: H.name }, expires_unix_ns: expires }),
    pairing.encode({
      type: "commit",
      exchange,
      joiner: { device: J.device, name: J.name },
      public_key: J.public_key,
      commitment: await pairing.commitment(joinerX.public, fromHex(J.nonce_hex)),
    }),
    pairing.encode({
      type: "reveal",
      exchange,
      to: J.device,
      x25519: b64url(hostX.public),
      nonce: b64url(fromHex(H.nonce_hex)),
      public_key: H.public_key,
    }),
    pairing.encode({ type: "open", exchange, x25519: b64url(joinerX.public), nonce: b64url(fromHex(J.nonce_hex)) }),
    pairing.encode({
      type: "confirm",
      exchange,
      sealed: await pairing.sealWith(key, "continuity-v1 pair confirm", utf8(exchange), fromHex(J.confirm_nonce_hex)),
    }),
    pairing.encode({
      type: "welcome",
      exchange,
      to: J.device,
      sealed: await pairing.sealWith(key, "continuity-v1 pair welcome", utf8(v.welcome_plaintext), fromHex(H.welcome_nonce_hex)),
    }),
  ];
  assert.deepEqual(sent, v.messages.map((m) => m.payload_text));
  assert.deepEqual(v.messages.map((m) => m.topic), v.messages.map((m) => `continuity/v1/${v.account}/pairing/${exchange}/${m.leaf}`));

  // The welcome opens to the account secret.
  const welcome = pairing.decode(utf8(sent[5]));
  const plain = await pairing.openWith(key, "continuity-v1 pair welcome", welcome.sealed);
  const w = parse(new TextDecoder().decode(plain));
  assert.equal(hex(fromB64url(w.secret)), v.account_secret_hex);
  assert.equal(w.account, v.account);
  assert.throws(() => pairing.decode(utf8('{"type":"decline","exchange":"x1"}')), /"v"/);
});

test("a command that comes late, within the window, is taken once; older ones are not", async () => {
  const v = vectors("envelope.json");
  const keys = await deriveKeys(fromHex(v.secret_hex));
  const signer = await pairing.ed25519Signer(fromHex(v.sender_ed25519_seed_hex));
  const topic = "continuity/v1/home/devices/tv-1/inbox";
  const command = (counter) =>
    seal(keys, signer, topic, "phone-1", counter, utf8(stringify({
      v: 1, id: `cmd-${counter}`, from: "phone-1", to: "tv-1", sent_unix_ns: 1800000000000000000,
      body: { type: "seek", position_ns: 42000000000 },
    })), fromHex(v.nonce_hex)).then((env) => utf8(stringify(env)));
  const opener = new Opener([keys], v.receiver_roster);
  const verdict = async (payload) => {
    try {
      await opener.decode(topic, payload);
      return "taken";
    } catch (e) {
      return e.code;
    }
  };
  const now = await command(1800000000000000n);
  const late = await command(1800000000000000n - 1000000n);
  const old = await command(1800000000000000n - LATE_WINDOW);
  assert.equal(await verdict(now), "taken");
  assert.equal(await verdict(late), "taken", "a second behind: a QoS 0 probe behind a QoS 1 command");
  assert.equal(await verdict(late), "replay", "but only once");
  assert.equal(await verdict(now), "replay");
  assert.equal(await verdict(old), "replay", "beyond the window");
  // After a restart only the greatest counter is remembered: nothing at or below it.
  const restarted = new Opener([keys], v.receiver_roster);
  restarted.remember("phone-1", topic, 1800000000000000n);
  await assert.rejects(restarted.decode(topic, late), (e) => e.code === "replay");
});

test("a device speaks through its helpers (<device>~<name>) and as no one else", async () => {
  const v = vectors("envelope.json");
  const keys = await deriveKeys(fromHex(v.secret_hex));
  const signer = await pairing.ed25519Signer(fromHex(v.sender_ed25519_seed_hex));
  const topic = "continuity/v1/home/devices/tv-1/inbox";
  let counter = 1800000000000000n;
  const verdict = async (from) => {
    counter += 1n;
    const env = await seal(keys, signer, topic, "phone-1", counter, utf8(stringify({
      v: 1, id: `cmd-${counter}`, from, to: "tv-1", sent_unix_ns: 1800000000000000000,
      body: { type: "seek", position_ns: 42000000000 },
    })), fromHex(v.nonce_hex));
    try {
      await new Opener([keys], v.receiver_roster).decode(topic, utf8(stringify(env)));
      return "taken";
    } catch (e) {
      return e.code;
    }
  };
  assert.equal(await verdict("phone-1~view-1a2b"), "taken");
  // A dot no longer marks a helper: RabbitMQ makes it a topic level.
  assert.equal(await verdict("phone-1.view-1a2b"), "impersonation");
  assert.equal(await verdict("phone-10~view"), "impersonation");
  assert.equal(await verdict("tv-1~view"), "impersonation");
  // Nobody is paired under a helper's id.
  assert.equal(deviceIdProblem("phone-1~tv") !== null, true);
  assert.equal(idProblem("phone-1~tv"), null);
  assert.notEqual(idProblem("~tv"), null);
});
