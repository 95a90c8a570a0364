// The exact-integer JSON codec: wall-clock nanoseconds survive a round trip, stamps one
// nanosecond apart stay apart, and hostile text is refused or kept harmless.

import { test } from "node:test";
import assert from "node:assert/strict";
import { JsonError, parse, stringify } from "../contract/json.js";

test("integers beyond 2^53 are exact and written back bare", () => {
  const text = '{"wall_ns":1800000000000000001,"counter":0,"rate":1.5,"n":-9007199254740993}';
  const v = parse(text);
  assert.equal(v.wall_ns, 1800000000000000001n);
  assert.notEqual(parse('{"w":1800000000000000000}').w, v.wall_ns, "one ns apart stays apart");
  assert.equal(typeof v.counter, "number");
  assert.equal(v.n, -9007199254740993n);
  assert.equal(stringify(v), text);
  assert.equal(JSON.parse(text).wall_ns, 1800000000000000000, "what JSON.parse would have made of it");
});

test("members keep their order; a repeated one counts once, the last; __proto__ is a plain member", () => {
  const v = parse('{"b":1,"a":2,"b":3,"__proto__":{"polluted":true}}');
  assert.deepEqual(Object.keys(v), ["b", "a", "__proto__"]);
  assert.equal(v.b, 3);
  assert.equal({}.polluted, undefined);
  assert.equal(Object.getPrototypeOf(v), Object.prototype);
});

test("garbage is a JsonError", () => {
  for (const bad of ["", "{", '{"a":}', "[1,]", '{"a":1} x', '"\u0001"', "01", "NaN", '"\\x"', "[".repeat(200)]) {
    assert.throws(() => parse(bad), JsonError, JSON.stringify(bad));
  }
});
