// `continuity broker --ws-listen`: a browser's MQTT over WebSockets and a device's MQTT over
// TCP meet on the embedded broker. Loopback only; the broker is started and stopped here.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import mqtt from "mqtt";

const BIN = fileURLToPath(new URL("../../target/debug/continuity", import.meta.url));

const freePort = () =>
  new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** Start the broker; resolves with the process and its two URLs once it says them. */
function startBroker(tcp, ws) {
  const child = spawn(BIN, ["broker", "--listen", `127.0.0.1:${tcp}`, "--ws-listen", `127.0.0.1:${ws}`, "--no-advertise"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`the broker said: ${out}`)), 10_000);
    child.once("exit", (code) => reject(new Error(`the broker exited (${code}): ${out}`)));
    child.stdout.on("data", (d) => {
      out += d;
      const ws = /WebSockets for browsers on (\S+)/.exec(out);
      if (ws && out.includes("listening on mqtt://")) {
        clearTimeout(timer);
        resolve({ child, ws: ws[1], tcp: `mqtt://127.0.0.1:${tcp}` });
      }
    });
  });
}

const connect = (url) =>
  new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000 });
    c.once("connect", () => resolve(c));
    c.once("error", reject);
  });

const message = (client, topic) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nothing on ${topic}`)), 5_000);
    client.on("message", (t, payload, packet) => {
      if (t === topic) {
        clearTimeout(timer);
        resolve({ payload: payload.toString(), retain: packet.retain });
      }
    });
  });

test("a browser over WebSockets and a device over TCP hear each other, retained state included", async (t) => {
  const broker = await startBroker(await freePort(), await freePort());
  t.after(() => broker.child.kill());
  assert.match(broker.ws, /^ws:\/\/127\.0\.0\.1:\d+\/mqtt$/);
  const device = await connect(broker.tcp);
  t.after(() => device.end(true));
  const state = "continuity/v1/home/sessions/tv-1/state";
  // Retained before the browser connects: it gets the broker's copy on subscribing.
  await device.publishAsync(state, '{"v":1,"sealed":"retained"}', { qos: 1, retain: true });

  const browser = await connect(broker.ws);
  t.after(() => browser.end(true));
  const retained = message(browser, state);
  await browser.subscribeAsync("continuity/v1/home/#", { qos: 1 });
  assert.deepEqual(await retained, { payload: '{"v":1,"sealed":"retained"}', retain: true });

  // And live, both ways.
  const inbox = "continuity/v1/home/devices/tv-1/inbox";
  await device.subscribeAsync(inbox, { qos: 1 });
  const toDevice = message(device, inbox);
  await browser.publishAsync(inbox, "from the browser", { qos: 1 });
  assert.equal((await toDevice).payload, "from the browser");
  const events = "continuity/v1/home/events";
  const toBrowser = message(browser, events);
  await device.publishAsync(events, "from the device", { qos: 0 });
  assert.equal((await toBrowser).payload, "from the device");
});

test("a WebSocket port in use is a clear error naming the option", async () => {
  const busy = createServer();
  await new Promise((r) => busy.listen(0, "127.0.0.1", r));
  const { port } = busy.address();
  const child = spawn(BIN, ["broker", "--listen", `127.0.0.1:${await freePort()}`, "--ws-listen", `127.0.0.1:${port}`, "--no-advertise"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  const code = await new Promise((r) => child.once("exit", r));
  busy.close();
  assert.notEqual(code, 0);
  assert.match(err, new RegExp(`port ${port} is already in use`));
  assert.match(err, /--ws-listen/);
});
