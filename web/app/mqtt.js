// A small MQTT 3.1.1 client over WebSockets (subprotocol "mqtt"): what the wire contract
// needs and nothing more. Clean session, a last will, QoS 0 and 1 both ways, retained
// messages, keep-alive. Every message handed on carries the instant (wall clock,
// nanoseconds as a BigInt) at which its WebSocket frame arrived, for the clock exchanges.

const enc = new TextEncoder();

/** The wall clock in nanoseconds since the Unix epoch, as a BigInt, sub-millisecond. */
export const nowNs = (() => {
  // performance.now() is monotonic and fine-grained; Date.now() is the wall clock. Keep
  // their difference, and take a new one when the wall clock was set (or drifted) by more
  // than 2 ms.
  let base = Date.now() - performance.now();
  return () => {
    const perf = performance.now();
    const drift = Date.now() - (base + perf);
    if (Math.abs(drift) > 2) base += drift;
    return BigInt(Math.round((base + perf) * 1000)) * 1000n;
  };
})();

function str(s) {
  const b = enc.encode(s);
  const out = new Uint8Array(2 + b.length);
  out[0] = b.length >> 8;
  out[1] = b.length & 0xff;
  out.set(b, 2);
  return out;
}

function packet(type, flags, ...parts) {
  const body = parts.flatMap((p) => [...p]);
  const len = [];
  let n = body.length;
  do {
    let d = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) d |= 0x80;
    len.push(d);
  } while (n > 0);
  return Uint8Array.from([(type << 4) | flags, ...len, ...body]);
}

const u16 = (n) => Uint8Array.of(n >> 8, n & 0xff);

/** The largest packet taken from the broker (the contract's own limit is checked later). */
const MAX_PACKET = 1 << 20;

export class MqttError extends Error {}

/**
 * One connection. `onMessage(topic, payload: Uint8Array, {retain, arrivedNs})`;
 * `onClose(reason)` once the connection is gone (after `connect` resolved).
 */
export class MqttClient {
  constructor(url, { clientId, will, keepalive = 20, onMessage, onClose }) {
    this.url = url;
    this.clientId = clientId;
    this.will = will;
    this.keepalive = keepalive;
    this.onMessage = onMessage ?? (() => {});
    this.onClose = onClose ?? (() => {});
    this.nextId = 1;
    this.waiting = new Map();
    this.buf = new Uint8Array(0);
    this.open = false;
  }

  /** Open the WebSocket and the MQTT session; resolves on CONNACK. */
  connect(timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (why) => {
        if (!settled) {
          settled = true;
          reject(new MqttError(why));
        }
        this.shutdown(why);
      };
      const timer = setTimeout(() => fail(`no answer from ${this.url} within ${timeoutMs} ms`), timeoutMs);
      let ws;
      try {
        ws = new WebSocket(this.url, ["mqtt"]);
      } catch (e) {
        clearTimeout(timer);
        reject(new MqttError(`cannot open ${this.url}: ${e.message}`));
        return;
      }
      this.ws = ws;
      ws.binaryType = "arraybuffer";
      ws.onopen = () => ws.send(this.connectPacket());
      ws.onerror = () => fail(`cannot reach the broker at ${this.url}`);
      ws.onclose = () => (settled ? this.shutdown("the broker closed the connection") : fail("the broker closed the connection"));
      ws.onmessage = (ev) => {
        const arrivedNs = nowNs();
        try {
          this.take(new Uint8Array(ev.data), arrivedNs, (code) => {
            clearTimeout(timer);
            if (settled) return;
            settled = true;
            if (code === 0) {
              this.open = true;
              this.startKeepalive();
              resolve();
            } else {
              reject(new MqttError(`the broker refused the connection (code ${code}: ${connackReason(code)})`));
              this.shutdown("refused");
            }
          });
        } catch (e) {
          fail(`protocol error: ${e.message}`);
        }
      };
    });
  }

  connectPacket() {
    let flags = 0x02; // clean session
    const parts = [str("MQTT"), Uint8Array.of(4), null, u16(this.keepalive), str(this.clientId)];
    if (this.will) {
      flags |= 0x04 | ((this.will.qos ?? 1) << 3) | (this.will.retain ? 0x20 : 0);
      const p = this.will.payload;
      parts.push(str(this.will.topic), Uint8Array.from([p.length >> 8, p.length & 0xff, ...p]));
    }
    parts[2] = Uint8Array.of(flags);
    return packet(1, 0, ...parts);
  }

  startKeepalive() {
    this.lastHeard = Date.now();
    this.pinger = setInterval(() => {
      if (Date.now() - this.lastHeard > this.keepalive * 1500) {
        this.shutdown("the broker stopped answering");
        return;
      }
      this.send(packet(12, 0));
    }, (this.keepalive * 1000) / 2);
  }

  send(bytes) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  take(bytes, arrivedNs, onConnack) {
    this.lastHeard = Date.now();
    const all = new Uint8Array(this.buf.length + bytes.length);
    all.set(this.buf);
    all.set(bytes, this.buf.length);
    let at = 0;
    for (;;) {
      let len = 0;
      let mult = 1;
      let i = at + 1;
      let complete = false;
      for (; i < all.length && i < at + 5; i++) {
        len += (all[i] & 0x7f) * mult;
        mult *= 128;
        if ((all[i] & 0x80) === 0) {
          complete = true;
          i++;
          break;
        }
      }
      if (!complete) {
        if (all.length - at >= 5) throw new Error("malformed remaining length");
        break;
      }
      if (len > MAX_PACKET) throw new Error(`a packet of ${len} bytes`);
      if (all.length < i + len) break;
      this.handle(all[at], all.subarray(i, i + len), arrivedNs, onConnack);
      at = i + len;
    }
    this.buf = all.slice(at);
  }

  handle(first, body, arrivedNs, onConnack) {
    const type = first >> 4;
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    switch (type) {
      case 2: // CONNACK
        onConnack(body[1]);
        break;
      case 3: {
        // PUBLISH
        const qos = (first >> 1) & 3;
        const retain = (first & 1) === 1;
        const tlen = view.getUint16(0);
        const topic = new TextDecoder().decode(body.subarray(2, 2 + tlen));
        let at = 2 + tlen;
        if (qos > 0) {
          const id = view.getUint16(at);
          at += 2;
          this.send(packet(qos === 1 ? 4 : 5, 0, u16(id)));
        }
        this.onMessage(topic, body.slice(at), { retain, arrivedNs });
        break;
      }
      case 4: // PUBACK
      case 11: // UNSUBACK
      case 9: {
        // SUBACK
        const id = view.getUint16(0);
        const w = this.waiting.get(id);
        if (w) {
          this.waiting.delete(id);
          if (type === 9 && body.subarray(2).some((c) => c === 0x80)) w.reject(new MqttError("the broker refused a subscription"));
          else w.resolve();
        }
        break;
      }
      case 13: // PINGRESP
        break;
      default:
        break;
    }
  }

  packetId() {
    const id = this.nextId;
    this.nextId = (this.nextId % 65535) + 1;
    return id;
  }

  ack(id) {
    return new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
  }

  /** Subscribe to `filters` at QoS 1; resolves on SUBACK. */
  subscribe(filters) {
    const id = this.packetId();
    const parts = [u16(id), ...filters.flatMap((f) => [str(f), Uint8Array.of(1)])];
    const done = this.ack(id);
    this.send(packet(8, 2, ...parts));
    return done;
  }

  /** Unsubscribe from `filters`; resolves on UNSUBACK. */
  unsubscribe(filters) {
    const id = this.packetId();
    const done = this.ack(id);
    this.send(packet(10, 2, u16(id), ...filters.map(str)));
    return done;
  }

  /** Publish; a QoS 1 publish resolves on PUBACK, a QoS 0 one at once. */
  publish(topic, payload, { qos = 1, retain = false } = {}) {
    if (!this.open) return Promise.reject(new MqttError("not connected"));
    const flags = (qos << 1) | (retain ? 1 : 0);
    if (qos === 0) {
      this.send(packet(3, flags, str(topic), payload));
      return Promise.resolve();
    }
    const id = this.packetId();
    const done = this.ack(id);
    this.send(packet(3, flags, str(topic), u16(id), payload));
    return done;
  }

  /** Leave cleanly (no last will). */
  disconnect() {
    this.send(packet(14, 0));
    this.shutdown("disconnected");
  }

  shutdown(reason) {
    clearInterval(this.pinger);
    const was = this.open;
    this.open = false;
    for (const w of this.waiting.values()) w.reject(new MqttError(reason));
    this.waiting.clear();
    if (this.ws) {
      this.ws.onclose = this.ws.onmessage = this.ws.onerror = null;
      try {
        this.ws.close();
      } catch {
        // already closed
      }
      this.ws = null;
    }
    if (was) this.onClose(reason);
  }
}

function connackReason(code) {
  return (
    {
      1: "unacceptable protocol version",
      2: "client id rejected",
      3: "server unavailable",
      4: "bad user name or password",
      5: "not authorised",
    }[code] ?? "unknown"
  );
}
