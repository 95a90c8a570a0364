// The web TV's device logic, piece by piece, without a browser or a broker: its clock
// probing on mock timers (a device that announces itself a moment before it listens to its
// inbox loses the probes sent in that moment: they go at QoS 0; the browser test's tablet
// did, and the web TV took fewer than three answers from it), and the copies of resume
// points it keeps to put back.
import assert from "node:assert/strict";
import { mock, test } from "node:test";
import { Device } from "../app/device.js";
import { Keeper } from "../app/keeper.js";
import { SealError } from "../contract/seal.js";

const MS = 1_000_000n;

/** setTimeout on mock timers: Node 20.11 on takes the APIs in an object, Node 18 (Debian
 * 12's) in an array. */
function fakeTimeouts() {
  try {
    mock.timers.enable({ apis: ["setTimeout"] });
  } catch {
    mock.timers.enable(["setTimeout"]);
  }
}
const AHEAD = 30_000n * MS;

/** A web TV's clock code with the tablet online, and what it sends. */
function webTv() {
  const sent = [];
  const d = Object.create(Device.prototype);
  Object.assign(d, {
    probes: new Map(),
    clocks: new Map(),
    availability: new Map([["tablet", "online"]]),
    changed() {},
    command(to, body) {
      sent.push({ to, body });
    },
  });
  return { d, sent };
}

test("a tablet deaf for its first 300 ms still answers three probes within three seconds", () => {
  fakeTimeouts();
  try {
    const { d, sent } = webTv();
    let now = 0;
    let answered = 0;
    d.probeSeveral("tablet");
    for (; now <= 3000; now += 10) {
      // Each probe sent in this step reaches the tablet, which answers it once it listens.
      for (const { to, body } of sent.splice(0)) {
        assert.equal(to, "tablet");
        assert.equal(body.type, "clock-probe");
        if (now < 300) continue;
        const t1 = body.t1_unix_ns;
        const t2 = t1 + 4n * MS + AHEAD;
        d.onReply("tablet", { t1_unix_ns: t1, t2_unix_ns: t2, t3_unix_ns: t2 + MS }, t1 + 9n * MS);
        answered += 1;
      }
      mock.timers.tick(10);
    }
    const clock = d.clocks.get("tablet");
    assert.equal(answered, 3, "answers taken");
    assert.equal(clock.samples, 3);
    assert.equal(clock.offset, AHEAD);
  } finally {
    mock.timers.reset();
  }
});

test("a reply nobody waits for (unasked, or replayed) measures nothing", () => {
  fakeTimeouts();
  try {
    const { d, sent } = webTv();
    d.probe("tablet");
    const t1 = sent[0].body.t1_unix_ns;
    const reply = { t1_unix_ns: t1, t2_unix_ns: t1 + AHEAD, t3_unix_ns: t1 + AHEAD };
    d.onReply("tablet", { ...reply, t1_unix_ns: t1 + 1n }, t1 + MS);
    assert.equal(d.clocks.get("tablet"), undefined, "not our t1");
    d.onReply("tablet", reply, t1 + MS);
    d.onReply("tablet", reply, t1 + MS);
    assert.equal(d.clocks.get("tablet").samples, 1, "the replay was ignored");
  } finally {
    mock.timers.reset();
  }
});

test("a resume point sealed again by its author replaces the copy this TV puts back", () => {
  const topic = "continuity/v1/home/media/00112233445566778899aabbccddeeff/resume";
  const point = { media: { id: "file:film.webm" }, position_ns: 509n, stamp: { wall_ns: 10n, logical: 0, device: "dev-phone" } };
  const first = new Uint8Array([1]);
  const again = new Uint8Array([2]);
  const d = Object.create(Device.prototype);
  Object.assign(d, {
    resume: new Map([["00112233445566778899aabbccddeeff", point]]),
    lastCopies: new Map([[topic, first]]),
    keeper: new Keeper(),
    changed() {},
  });
  d.keeper.adopt(topic);
  // The same point (same stamp), its envelope newer: the one the other devices now take (an
  // older counter would be refused by them as a replay).
  d.keeper.arrived(topic, false, 0);
  d.onResume("00112233445566778899aabbccddeeff", { ...point }, topic, again);
  assert.equal(d.lastCopies.get(topic), again);
  assert.equal(d.keeper.nextDue(), null, "nothing to put back");
});

/**
 * A broker holding `topic` (`retained`, at first `held`) for web TV `d`, on a fake clock
 * stepped `step` ms at a time: what `d` publishes there comes back to it 5 ms later.
 */
function brokerFor(d, topic, held, step) {
  const b = { clock: 0, retained: held, published: [] };
  b.deliver = (payload) => {
    b.retained = payload;
    d.receive(topic, payload, { retain: false });
  };
  d.nowMs = () => b.clock;
  d.client = {
    open: true,
    async publish(_, payload) {
      b.published.push(payload);
      setTimeout(() => b.deliver(payload), 5);
    },
  };
  b.until = async (t) => {
    for (; b.clock < t; b.clock += step) {
      mock.timers.tick(step);
      await new Promise((r) => setImmediate(r));
    }
  };
  return b;
}

test("alone with the broker, the web TV puts back the newest point through clears, asks and replays", async () => {
  // The browser test's sequence, on a fake clock: the topic was contested (two repairs in a
  // few seconds), so the next repair waits; an ask comes and is answered meanwhile, and a
  // replay of an older point lands before the repair is due. The newest point must be back.
  fakeTimeouts();
  try {
    const topic = "continuity/v1/home/media/00112233445566778899aabbccddeeff/resume";
    const newest = new Uint8Array([9]);
    const older = new Uint8Array([1]);
    const logged = [];
    const d = Object.create(Device.prototype);
    Object.assign(d, {
      account: "home",
      me: { id: "web" },
      lastCopies: new Map([[topic, newest]]),
      keeper: new Keeper(),
      arriving: new Map(),
      sessions: new Map(),
      log(line) {
        logged.push(line);
      },
      // What the broker sends: a clear, or a sealed copy that this TV has taken already (its
      // own copy's echo, or the replay), refused as old, as the real opener does.
      opener: {
        async decode(_, payload) {
          if (payload.length === 0) return { kind: "cleared", topic: { account: "home" } };
          throw new SealError("replay", "replayed or old");
        },
      },
    });
    d.keeper.adopt(topic);
    const b = brokerFor(d, topic, newest, 5);
    b.deliver(new Uint8Array());
    await b.until(1000);
    b.deliver(new Uint8Array());
    await b.until(3000);
    assert.equal(b.published.length, 2, "both clears repaired");
    b.deliver(new Uint8Array());
    await b.until(3100);
    d.onAsk({ device: "phone", seen: [] });
    await b.until(3800);
    b.deliver(older);
    await b.until(40000);
    assert.equal(b.retained, newest, `the newest point is back; the TV said:\n${logged.join("\n")}`);
    assert.ok(b.published.length <= 5, `${b.published.length} publishes: no more than the hits need`);
  } finally {
    mock.timers.reset();
  }
});

/** A web TV at the deadline of a handoff to it, and the reasons it fails with. */
function targetAtDeadline(target) {
  const failed = [];
  const logged = [];
  const d = Object.create(Device.prototype);
  Object.assign(d, {
    handoff: { target: { id: "h1", cold: true, prerolled: null, prerolls: 1, switch: null, received: 0n, deadline: 0n, ...target }, source: null, pending: new Map() },
    me: { id: "web" },
    lease: { device: "phone" },
    anchor: null,
    sessions: new Map(),
    clocks: new Map(),
    log(line) {
      logged.push(line);
    },
    async failTarget(reason) {
      failed.push(reason);
      this.handoff.target = null;
    },
  });
  return { d, failed, logged };
}

test("a load that gives nothing to preroll by the deadline fails with media-unavailable, one that did with timeout", async () => {
  // A web server that accepts and sends nothing: the TV's load never prerolls.
  const stalled = targetAtDeadline({});
  await stalled.d.tick();
  assert.deepEqual(stalled.failed, ["media-unavailable"]);
  assert.match(stalled.logged[0], /no data within/);
  // Loaded and prerolled, and the switch never agreed (the source went quiet): a timeout.
  const prerolled = targetAtDeadline({ prerolled: 5n });
  await prerolled.d.tick();
  assert.deepEqual(prerolled.failed, ["timeout"]);
  // The media was there already (only a seek): a timeout too.
  const warm = targetAtDeadline({ cold: false });
  await warm.d.tick();
  assert.deepEqual(warm.failed, ["timeout"]);
});

test("the web TV listens to the devices its roster names, and follows the roster", async () => {
  const calls = [];
  const d = Object.create(Device.prototype);
  const roster = (ids) => ({ devices: ids.map((id) => ({ device: id, revoked: id === "gone" })) });
  Object.assign(d, {
    prefix: "continuity/v1/home",
    connected: true,
    membership: { roster: roster(["phone", "tv"]) },
    client: {
      async subscribe(filters) {
        calls.push(["subscribe", filters]);
      },
      async unsubscribe(filters) {
        calls.push(["unsubscribe", filters]);
      },
    },
  });
  d.deviceFilters = d.rosterFilters();
  assert.deepEqual(d.deviceFilters, [
    "continuity/v1/home/+/phone/availability",
    "continuity/v1/home/devices/phone/info",
    "continuity/v1/home/sessions/phone/state",
    "continuity/v1/home/+/tv/availability",
    "continuity/v1/home/devices/tv/info",
    "continuity/v1/home/sessions/tv/state",
  ]);
  // A newcomer, and a device revoked: its topics no more, the newcomer's from now on.
  d.membership.roster = roster(["phone", "tv", "tablet", "gone"]);
  d.membership.roster.devices.find((e) => e.device === "phone").revoked = true;
  await d.resubscribe();
  assert.deepEqual(calls, [
    ["subscribe", ["continuity/v1/home/+/tablet/availability", "continuity/v1/home/devices/tablet/info", "continuity/v1/home/sessions/tablet/state"]],
    ["unsubscribe", ["continuity/v1/home/+/phone/availability", "continuity/v1/home/devices/phone/info", "continuity/v1/home/sessions/phone/state"]],
  ]);
});

test("a newer point still being opened when a replay lands behind it is put back over the replay", async () => {
  // Opening a message is asynchronous (WebCrypto): a newer point arrives, then an older one
  // right behind it, which is opened first and refused as older. The broker holds the older
  // one; the newer one, taken to keep once opened, must go back.
  fakeTimeouts();
  try {
    const key = "00112233445566778899aabbccddeeff";
    const topic = `continuity/v1/home/media/${key}/resume`;
    const point = (wall, position) => ({ media: { id: "file:film.webm" }, position_ns: position, stamp: { wall_ns: wall, logical: 0, device: "phone" } });
    const kept = new Uint8Array([1]);
    const newer = new Uint8Array([2]);
    const replay = new Uint8Array([0]);
    const points = new Map([
      [kept, point(10n, 100n)],
      [newer, point(20n, 200n)],
      [replay, point(5n, 50n)],
    ]);
    const d = Object.create(Device.prototype);
    Object.assign(d, {
      account: "home",
      me: { id: "web" },
      resume: new Map([[key, points.get(kept)]]),
      lastCopies: new Map([[topic, kept]]),
      keeper: new Keeper(),
      arriving: new Map(),
      hlc: { witness() {} },
      keys: { mediaKey: async () => key },
      log() {},
      changed() {},
      opener: {
        async decode(_, payload) {
          // The newer point takes 50 ms to open, the replay 1 ms.
          await new Promise((r) => setTimeout(r, payload === newer ? 50 : 1));
          return { kind: "resume", topic: { account: "home", device: "phone", mediaKey: key }, body: points.get(payload) };
        },
      },
    });
    d.keeper.adopt(topic);
    const b = brokerFor(d, topic, kept, 1);
    b.deliver(newer);
    await b.until(10);
    b.deliver(replay);
    await b.until(5000);
    assert.equal(d.resume.get(key).position_ns, 200n, "the newer point taken");
    assert.equal(b.retained, newer, "the newer point is back on the broker");
    assert.deepEqual(b.published, [newer], "put back once");
  } finally {
    mock.timers.reset();
  }
});
