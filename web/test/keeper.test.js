// The web TV's keeper: the same rule and the same cases as the Rust devices'
// (src/net/keeper.rs), on explicit times.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Keeper } from "../app/keeper.js";

const S = 1000;

test("a copy replaced after it came back is repaired within half a second", () => {
  const k = new Keeper();
  k.sent("t");
  assert.equal(k.arrived("t", false, S), "in-flight", "an old copy before this one's echo");
  assert.equal(k.arrived("t", true, S), "confirmed");
  const at = k.arrived("t", false, 2 * S);
  assert.ok(at >= 2 * S + 100 && at <= 2 * S + 400, `${at}`);
  assert.deepEqual(k.due(at - 1), []);
  assert.deepEqual(k.due(at), [{ topic: "t", answer: false }]);
  assert.equal(k.arrived("u", false, 2 * S), "not-kept");
});

test("a topic that stays contested is repaired ever more slowly, at most every 30 s", () => {
  const k = new Keeper();
  k.sent("t");
  k.arrived("t", true, 0);
  let now = 10 * S;
  let last = now;
  const gaps = [];
  for (let i = 0; i < 8; i++) {
    const at = k.arrived("t", false, now);
    assert.equal(typeof at, "number");
    assert.equal(k.due(at).length, 1);
    gaps.push(at - last);
    last = at;
    k.sent("t");
    k.arrived("t", true, at);
    now = at + 1; // contested again at once
  }
  assert.ok(gaps.slice(1).every((g, i) => i === 0 || g >= gaps[i]), `${gaps}`);
  assert.ok(gaps.at(-1) >= 30 * S - 1 && gaps.every((g) => g <= 30 * S + 1), `${gaps}`);
  // A minute without a repair: calm again, the next one is quick.
  const at = k.arrived("t", false, last + 61 * S);
  assert.ok(at <= last + 61 * S + 400, `${at - last}`);
});

test("a repair pending when the topic is hit again still comes, whatever came back between", () => {
  // The web TV once skipped a repair for good: a clear scheduled one 2 s ahead, an ask's
  // answer put the copy back and its echo came, then a replay arrived before the repair
  // was due, and the repair, seeing the copy heard since it was scheduled, did nothing.
  const k = new Keeper(() => 0);
  k.sent("t");
  k.arrived("t", true, 0);
  for (const when of [1 * S, 2 * S]) {
    const at = k.arrived("t", false, when);
    assert.equal(k.due(at).length, 1);
    k.sent("t");
    k.arrived("t", true, at);
  }
  const first = k.arrived("t", false, 3 * S); // a clear: contested, so not at once
  assert.ok(first > 3.5 * S, `${first}`);
  assert.equal(k.answer("t", 3.1 * S), false, "an ask meanwhile: the repair due answers it too");
  assert.equal(k.arrived("t", true, 3.3 * S), "confirmed", "another device's answer, the same copy, cancels it");
  const again = k.arrived("t", false, 3.8 * S); // a replay
  assert.equal(typeof again, "number");
  assert.deepEqual(k.due(again), [{ topic: "t", answer: false }]);
});

test("a newer copy from another device is kept instead", () => {
  const k = new Keeper();
  k.sent("t");
  k.arrived("t", true, 0);
  assert.equal(typeof k.arrived("t", false, S), "number");
  k.adopt("t");
  assert.deepEqual(k.due(60 * S), []);
  assert.equal(k.arrived("t", true, 2 * S), "confirmed");
  assert.equal(typeof k.arrived("t", false, 3 * S), "number");
  // A device that never published the topic keeps a copy it saw just the same.
  k.adopt("u");
  assert.equal(typeof k.arrived("u", false, 3 * S), "number");
});

test("an ask is answered soon unless another device sends the same copy first, and asks cannot drive it", () => {
  const k = new Keeper();
  for (const t of ["own", "shared"]) {
    k.sent(t);
    k.arrived(t, true, 0);
  }
  k.answer("own", 10 * S);
  k.answer("shared", 10 * S);
  assert.equal(k.arrived("shared", true, 10 * S + 1), "confirmed");
  assert.deepEqual(k.due(10 * S + 400), [{ topic: "own", answer: true }]);
  k.sent("own");
  k.arrived("own", true, 10 * S + 500);
  k.answer("own", 10 * S + 500);
  assert.deepEqual(k.due(11 * S), []);
  assert.ok(k.nextDue() >= 11 * S);
});
