// Keeping the broker's copy of this TV's retained topics right: the same rule as the Rust
// devices' keeper (src/net/keeper.rs), which PROTOCOL.md ("Repairs") describes.
//
// The broker is a cache anyone on it can write to: a retained copy can be cleared, replaced
// with garbage, an old copy or a forgery. This TV sees every arrival on its topics and
// compares it with the copy it keeps there:
//
// - the same bytes: the broker holds the copy (it is *confirmed*), and any repair or answer
//   due for it is not needed any more (another device that keeps the same copy sent it);
// - anything else before the latest copy came back: that copy is on its way and replaces it;
// - anything else after that: the broker lost the copy; publish it again after a short
//   random delay (0.1–0.4 s), later (1 s, 2 s, … 30 s after the last repair) while the topic
//   stays contested, so that nobody can make two devices fight at the network's speed; a
//   minute without repair and it is calm again.
//
// Sans-IO: the device calls it with the time (ms, monotonic) and publishes what `due` says.

const FIRST_DELAY_MS = 100;
const JITTER_MS = 300;
const BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30000;
const CALM_MS = 60000;

export class Keeper {
  constructor(random = Math.random) {
    this.random = random;
    /** topic → { confirmed, repairAt, strikes, lastRepair, answer } */
    this.kept = new Map();
  }

  entry(topic) {
    let k = this.kept.get(topic);
    if (!k) {
      k = { confirmed: false, repairAt: null, strikes: 0, lastRepair: -Infinity, answer: false };
      this.kept.set(topic, k);
    }
    return k;
  }

  /** This TV (re)published its copy of `topic`. */
  sent(topic) {
    Object.assign(this.entry(topic), { confirmed: false, repairAt: null, answer: false });
  }

  /**
   * Something arrived on `topic`; `mine` is whether it is the copy kept there. Returns
   * "not-kept", "confirmed", "in-flight", or the time a repair is due.
   */
  arrived(topic, mine, now) {
    const k = this.kept.get(topic);
    if (!k) return "not-kept";
    if (mine) {
      Object.assign(k, { confirmed: true, repairAt: null, answer: false });
      return "confirmed";
    }
    if (!k.confirmed) return "in-flight";
    k.answer = false;
    return this.schedule(k, now);
  }

  /**
   * Another device's broker lacks this TV's copies: publish `topic` again soon, unless the
   * same copy arrives from another device first. Backs off like a repair. Whether this
   * scheduled something (a repair or answer due already answers it too).
   */
  answer(topic, now) {
    const k = this.entry(topic);
    if (k.repairAt !== null) return false;
    k.answer = true;
    this.schedule(k, now);
    return true;
  }

  /** The copy to keep on `topic` is the one that just arrived (another device's). */
  adopt(topic) {
    Object.assign(this.entry(topic), { confirmed: true, repairAt: null, answer: false });
  }

  /** The topics to publish again at `now` (then call `sent` for each), as { topic, answer }. */
  due(now) {
    const out = [];
    for (const [topic, k] of this.kept) {
      if (k.repairAt === null || k.repairAt > now) continue;
      k.repairAt = null;
      k.strikes += 1;
      k.lastRepair = now;
      out.push({ topic, answer: k.answer });
      k.answer = false;
    }
    return out;
  }

  /** The earliest scheduled repair or answer, or null. */
  nextDue() {
    let next = null;
    for (const k of this.kept.values()) {
      if (k.repairAt !== null && (next === null || k.repairAt < next)) next = k.repairAt;
    }
    return next;
  }

  schedule(k, now) {
    if (now - k.lastRepair > CALM_MS) k.strikes = 0;
    k.repairAt =
      k.strikes === 0
        ? now + FIRST_DELAY_MS + Math.floor(this.random() * JITTER_MS)
        : Math.max(k.lastRepair + Math.min(MAX_BACKOFF_MS, BACKOFF_MS * 2 ** Math.min(k.strikes - 1, 16)), now + FIRST_DELAY_MS);
    return k.repairAt;
  }
}
