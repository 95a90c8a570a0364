// The JSON Schemas in docs/schema/ against the message vectors: every valid vector passes
// its schema, and every invalid one that a schema can judge is refused by it. What JSON
// Schema cannot say (the topic, sizes in bytes, a body that disagrees with its topic, a
// media id's hash, one field compared with another) is listed, with the reason, and is
// the decoder's alone.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import Ajv2020 from "ajv/dist/2020.js";

const root = (p) => fileURLToPath(new URL(`../../${p}`, import.meta.url));
const load = (p) => JSON.parse(readFileSync(root(p), "utf8"));

const SCHEMA_OF_TOPIC = [
  [/\/devices\/[^/]+\/availability$/, "availability"],
  [/\/devices\/[^/]+\/info$/, "device-info"],
  [/\/devices\/[^/]+\/inbox$/, "command"],
  [/\/sessions\/[^/]+\/state$/, "session-state"],
  [/\/media\/[^/]+\/resume$/, "resume-point"],
  [/\/events$/, "event"],
  [/\/roster$/, "roster"],
];

/** Invalid vectors whose fault JSON Schema cannot express, by name: why. */
const DECODER_ONLY = {
  "device does not match the topic": "a member compared with the topic",
  "device info for another device": "a member compared with the topic",
  "command to another device": "a member compared with the topic",
  "resume point on another media's key": "a keyed hash of a member, compared with the topic",
  "clock reply that left before the probe arrived": "one member compared with another",
  "clock probe after the year 2500":
    "one nanosecond over the limit: a JSON number in JavaScript cannot tell it from the limit (the decoder reads it exactly)",
};

function compile() {
  // BigInts are not needed here: a schema's bounds are checked on numbers, and the vectors'
  // large numbers are within a factor of 2^-53 of their true value.
  const ajv = new Ajv2020({ allErrors: false, strict: false });
  const schemas = {};
  for (const name of [...SCHEMA_OF_TOPIC.map(([, n]) => n), "sealed-envelope", "pairing"]) {
    schemas[name] = ajv.compile(load(`docs/schema/${name}.json`));
  }
  return schemas;
}

test("the schemas accept every valid vector and refuse every invalid one they can judge", () => {
  const schemas = compile();
  const { cases } = load("tests/vectors/messages.json");
  const wrong = [];
  let judged = 0;
  for (const c of cases) {
    if (c.payload === undefined) continue; // raw text: sizes and JSON syntax, the decoder's
    if (c.error && c.error !== "field" && c.error !== "version") continue; // topic, JSON, size
    const name = "sealed" in c.payload ? "sealed-envelope" : SCHEMA_OF_TOPIC.find(([re]) => re.test(c.topic))?.[1];
    assert.ok(name, `${c.name}: no schema for ${c.topic}`);
    const ok = schemas[name](c.payload);
    if (c.valid && !ok) wrong.push(`${c.name}: valid, but ${name}.json refuses it: ${JSON.stringify(schemas[name].errors)}`);
    if (!c.valid) {
      judged++;
      if (ok && !(c.name in DECODER_ONLY)) wrong.push(`${c.name}: invalid (${c.field}), but ${name}.json accepts it`);
      if (!ok && c.name in DECODER_ONLY) wrong.push(`${c.name}: listed as decoder-only, yet ${name}.json refuses it`);
    }
  }
  assert.ok(judged >= 30, `only ${judged} invalid vectors judged`);
  assert.deepEqual(wrong, []);
});

test("the pairing schema accepts the pairing vector's messages", () => {
  const schemas = compile();
  for (const m of load("tests/vectors/pairing.json").messages) {
    assert.ok(schemas.pairing(JSON.parse(m.payload_text)), `${m.leaf}: ${JSON.stringify(schemas.pairing.errors)}`);
  }
  assert.ok(!schemas.pairing({ type: "decline", exchange: "x0123456789ab" }), "no v");
});
