// The web TV's screens: pairing, then home (what plays where, the resume prompt, the player
// and its "Continue on …" controls). Every control is a real button reached with the arrow
// keys of a remote (spatial navigation), Enter and Back; what happens is said in a live
// region.

import * as keystore from "./keystore.js";
import { Player } from "./player.js";
import { clockText, Device, join, loadIdentity, mediaTitle, PairFailure, playableHere, spokenTime, uriFor } from "./device.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const brokerUrl = params.get("broker") ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/mqtt`;

const app = { device: null, player: new Player($("video")), dismissed: new Set() };
window.continuityApp = app;

function show(screen) {
  for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== screen;
}

let announceTimer;
function announce(text) {
  const region = $("announce");
  region.textContent = "";
  // A fresh text node, so that screen readers speak a repeated sentence again.
  setTimeout(() => (region.textContent = text), 50);
  const toast = $("toast");
  toast.textContent = text;
  toast.classList.add("show");
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => toast.classList.remove("show"), 4000);
}

function setLink(text) {
  $("link").textContent = text;
}

// --- Pairing --------------------------------------------------------------------------

async function pairScreen(me) {
  show("pair");
  if (params.get("name")) $("pair-name").value = params.get("name");
  if (params.get("account")) $("pair-account").value = params.get("account");
  setLink("Not paired yet");
  $("pair-start").focus();
  $("pair-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const name = $("pair-name").value.trim();
    const account = $("pair-account").value.trim();
    $("pair-start").disabled = true;
    try {
      const membership = await join({
        brokerUrl,
        account,
        name,
        me,
        ui: {
          status: (t) => ($("pair-status").textContent = t),
          code: (code, host) => askCode(code, host),
        },
      });
      await keystore.put("current", account);
      $("pair-code-box").hidden = true;
      announce(`Paired with the account ${account}`);
      await startDevice(me, membership);
    } catch (e) {
      $("pair-code-box").hidden = true;
      $("pair-status").textContent = e instanceof PairFailure ? e.message : `Pairing failed: ${e.message}`;
      $("pair-start").disabled = false;
      $("pair-start").focus();
    }
  };
}

function askCode(code, host) {
  $("pair-code").textContent = code;
  $("pair-code").setAttribute("aria-label", `Code ${code.replace(" ", "").split("").join(" ")}`);
  $("pair-question").textContent = `Does ${host} show the same code?`;
  $("pair-status").textContent = "";
  $("pair-code-box").hidden = false;
  $("pair-yes").focus();
  announce(`Pairing code ${code}. Does ${host} show the same code?`);
  return new Promise((resolve) => {
    $("pair-yes").onclick = () => resolve(true);
    $("pair-no").onclick = () => resolve(false);
  });
}

// --- Home -----------------------------------------------------------------------------

async function startDevice(me, membership) {
  const device = new Device({ brokerUrl, me, membership, player: app.player });
  app.device = device;
  $("who").textContent = `${device.name} · account ${device.account}`;
  show("home");
  device.addEventListener("change", () => render());
  device.addEventListener("announce", (e) => announce(e.detail));
  device.addEventListener("suggest", (e) => {
    app.suggestion = e.detail;
    renderSuggestion(true);
  });
  device.addEventListener("handoff", (e) => {
    const r = e.detail;
    if (r.failure) announce(`The handoff failed: ${r.failure.replaceAll("-", " ")}`);
  });
  const video = $("video");
  for (const ev of ["play", "pause", "seeked", "ratechange", "ended"]) video.addEventListener(ev, () => device.playerChanged(ev));
  app.player.onMutedByPolicy = () => announce("Sound is off until you press a key: press OK for sound");
  document.addEventListener("keydown", () => {
    if (video.muted && app.player.onMutedByPolicy) video.muted = false;
  });
  // Leaving the page (the TV switches apps): where it was, for every device to resume.
  addEventListener("pagehide", () => device.active && device.recordResume(app.player.positionNs));
  setInterval(renderProgress, 250);
  render();
  focusFirst();
  device.start();
}

function focusFirst() {
  const first = document.querySelector("#home button:not([disabled])");
  if (first && (document.activeElement === document.body || !document.activeElement)) first.focus();
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick") e.onclick = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

function progressBar(label, posNs, durNs) {
  const bar = el("div", { class: "progress", role: "progressbar", "aria-label": label }, el("div", { class: "fill" }));
  setProgress(bar, posNs, durNs);
  return bar;
}

function setProgress(bar, posNs, durNs) {
  const pos = Number(posNs ?? 0n) / 1e9;
  const dur = durNs == null ? null : Number(durNs) / 1e9;
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", String(Math.round(dur ?? 0)));
  bar.setAttribute("aria-valuenow", String(Math.round(pos)));
  bar.setAttribute("aria-valuetext", dur ? `${spokenTime(posNs)} of ${spokenTime(durNs)}` : spokenTime(posNs));
  bar.firstChild.style.width = dur ? `${Math.min(100, (pos / dur) * 100)}%` : "0";
}

/** Whether this TV can play `media`: a URI it can fetch, of a kind its browser plays (as far as it knows yet). */
function canPlayHere(media) {
  const uri = uriFor(media);
  return playableHere(uri) && app.player.supportKnown(uri)?.ok !== false;
}

/** Re-render the lists only when what they show changed, so that focus stays put. */
let lastKey = "";
function render() {
  const d = app.device;
  if (!d) return;
  setLink(d.connected ? (d.synced ? "Connected" : "Connecting…") : "Offline: reconnecting");
  const others = [...d.sessions.values()].filter((s) => s.device !== d.me.id && s.media && s.anchor);
  const online = (dev) => d.availability.get(dev) === "online";
  const targets = [...d.info.values()].filter((i) => i.device.id !== d.me.id && online(i.device.id) && i.capabilities.includes("handoff"));
  const key = JSON.stringify([
    others.map((s) => [s.device, s.session, s.media.id, s.anchor.state, s.lease.device, online(s.device), d.nameOf(s.device), canPlayHere(s.media)]),
    targets.map((i) => [i.device.id, i.device.name]),
    [...d.info.values()].map((i) => [i.device.id, i.device.name, i.device.class, online(i.device.id)]),
    d.active,
    d.media?.id,
  ]);
  if (key !== lastKey) {
    lastKey = key;
    renderSessions(others, online);
    renderDevices();
    renderNow(targets);
  }
  renderResume();
  renderSuggestion(false);
  renderProgress();
}

function renderSessions(others, online) {
  const d = app.device;
  const list = $("sessions");
  const focused = document.activeElement?.id;
  list.replaceChildren(
    ...others.map((s) => {
      const name = d.nameOf(s.device);
      const title = mediaTitle(s.media);
      const live = online(s.device) && s.lease.device === s.device;
      const state = !online(s.device) ? "stopped (offline)" : s.anchor.state;
      const card = el(
        "li",
        { class: "card", "data-device": s.device },
        el("h3", { text: title }),
        el("p", { text: `${state === "playing" ? "Playing" : state[0].toUpperCase() + state.slice(1)} on ${name}` }),
        progressBar(`${title} on ${name}`, d.livePosition(s), s.media.duration_ns),
        el("p", { class: "time", "data-time": s.device }),
      );
      if (live && canPlayHere(s.media)) {
        card.append(
          el("button", {
            type: "button",
            id: `here-${s.device}`,
            text: "Continue here",
            "aria-label": `Continue here: ${title}, from ${name}`,
            onclick: () => continueHere(s.device),
          }),
        );
      }
      return card;
    }),
  );
  $("sessions-empty").hidden = others.length > 0;
  if (focused && $(focused)) $(focused).focus();
}

function renderDevices() {
  const d = app.device;
  const items = [...d.info.values()]
    .filter((i) => i.device.id !== d.me.id)
    .map((i) => {
      const on = d.availability.get(i.device.id) === "online";
      return el("li", { class: on ? "on" : "off", text: `${i.device.name} (${i.device.class}) · ${on ? "online" : "offline"}` });
    });
  items.unshift(el("li", { class: "on", text: `${d.name} (this TV) · ${d.connected ? "online" : "offline"}` }));
  $("devices").replaceChildren(...items);
}

function renderNow(targets) {
  const d = app.device;
  $("now").hidden = !(d.media && d.anchor && d.active);
  if ($("now").hidden) return;
  const focused = document.activeElement?.id;
  $("continue-on").replaceChildren(
    ...targets.map((i) =>
      el("button", {
        type: "button",
        id: `to-${i.device.id}`,
        text: `Continue on ${i.device.name}`,
        onclick: () => continueOn(i.device.id),
      }),
    ),
  );
  if (focused && $(focused)) $(focused).focus();
  renderCaptions();
}

function renderProgress() {
  const d = app.device;
  if (!d) return;
  for (const card of $("sessions").children) {
    const s = d.sessions.get(card.dataset.device);
    if (!s?.anchor) continue;
    const pos = d.availability.get(s.device) === "online" ? d.livePosition(s) : BigInt(s.anchor.position_ns);
    setProgress(card.querySelector(".progress"), pos, s.media.duration_ns);
    card.querySelector(".time").textContent = `${clockText(pos)}${s.media.duration_ns ? ` / ${clockText(BigInt(s.media.duration_ns))}` : ""}`;
  }
  if (!$("now").hidden) {
    const p = app.player.positionNs;
    const dur = d.media?.duration_ns ?? app.player.durationNs;
    $("now-text").textContent = `${mediaTitle(d.media)} · ${clockText(p)}${dur ? ` / ${clockText(BigInt(dur))}` : ""}`;
    setProgress($("now-progress"), p, dur);
    const label = app.player.playing ? "Pause" : "Play";
    if ($("play-pause").textContent !== label) $("play-pause").textContent = label;
  }
}

/**
 * The newest media another device stopped, with where it resumes by the rules of
 * `Device.resumeFrom`: `{key, p, from}`. Not a media that plays anywhere (its live session
 * is where it is: its card offers it), nor one that finished since, nor one that this TV
 * plays or is taking over, nor one this TV cannot play.
 */
function resumeCandidate() {
  const d = app.device;
  const playing = new Set(
    [...d.sessions.values()].filter((s) => s.media && s.anchor?.state === "playing" && d.availability.get(s.device) === "online").map((s) => s.media.id),
  );
  let best = null;
  for (const [key, p] of d.resume) {
    if (playing.has(p.media.id) || d.playsHere(p.media.id) || !canPlayHere(p.media)) continue;
    const from = d.resumeFrom(p.media.id, p);
    if (!from || from.playing || from.device === d.me.id || app.dismissed.has(`${key}:${from.stamp.wall_ns}`)) continue;
    if (!best || BigInt(from.stamp.wall_ns) > BigInt(best.from.stamp.wall_ns)) best = { key, p, from };
  }
  return best;
}

function renderResume() {
  const c = resumeCandidate();
  const box = $("resume");
  if (!c) {
    if (!box.hidden) {
      box.hidden = true;
      focusFirst();
    }
    return;
  }
  const d = app.device;
  const title = mediaTitle(c.p.media);
  const text = `Resume “${title}” at ${clockText(c.from.position)} from ${d.nameOf(c.from.device)}?`;
  if ($("resume-text").textContent === text && !box.hidden) return;
  $("resume-text").textContent = text;
  $("resume-detail").textContent = `It stopped there ${spokenTime(c.from.position)} in.`;
  const wasHidden = box.hidden;
  box.hidden = false;
  const dismiss = () => {
    app.dismissed.add(`${c.key}:${c.from.stamp.wall_ns}`);
    render();
  };
  // A session that another device holds, paused, moves here (a handoff); a point starts anew.
  $("resume-yes").onclick = () => (c.from.live ? (dismiss(), continueHere(c.from.device)) : startHere(c.p.media, c.from.position, dismiss));
  $("resume-over").onclick = () => startHere(c.p.media, 0n, dismiss);
  $("resume-no").onclick = dismiss;
  if (wasHidden) {
    announce(text);
    if (!document.activeElement || document.activeElement === document.body || document.activeElement.closest("#home")) $("resume-yes").focus();
  }
}

/**
 * "Phone is on: continue there?": a device of another class came online while this TV
 * plays. Said in words, the answer focused (one key continues there); gone when the device
 * goes offline or this TV stops playing the session.
 */
function renderSuggestion(fresh) {
  const d = app.device;
  const s = app.suggestion;
  const box = $("suggest");
  if (!s || !d.active || d.availability.get(s.device) !== "online") {
    app.suggestion = null;
    if (!box.hidden) {
      box.hidden = true;
      focusFirst();
    }
    return;
  }
  if (!fresh) return;
  const text = `${s.name} is on: continue there?`;
  $("suggest-text").textContent = text;
  $("suggest-yes").textContent = `Continue on ${s.name}`;
  const done = () => {
    app.suggestion = null;
    render();
  };
  $("suggest-yes").onclick = () => {
    done();
    continueOn(s.device);
  };
  $("suggest-no").onclick = done;
  box.hidden = false;
  announce(text);
  if (!document.activeElement || document.activeElement === document.body || document.activeElement.closest("#home")) $("suggest-yes").focus();
}

async function startHere(media, positionNs, done) {
  done();
  try {
    await app.device.playHere(media, positionNs);
    announce(`Playing ${mediaTitle(media)} from ${clockText(positionNs)}`);
    $("play-pause").focus();
  } catch (e) {
    announce(`Cannot play it here: ${e.message}`);
  }
}

async function continueHere(source) {
  const d = app.device;
  announce(`Continuing here from ${d.nameOf(source)}…`);
  const r = await d.requestHandoff(d.me.id, source);
  if (!r.failure) $("play-pause").focus();
}

async function continueOn(target) {
  const d = app.device;
  announce(`Continuing on ${d.nameOf(target)}…`);
  const r = await d.requestHandoff(target, d.me.id);
  if (!r.failure) {
    announce(`Continued on ${d.nameOf(target)}`);
    focusFirst();
  }
}

// --- Captions, by language --------------------------------------------------------------

let captionsFor = null;
let listing = null;

/** The captions of a media served by this broker: `<name>.<language>.vtt` beside it. */
async function sidecars(uri) {
  const base = `${location.origin}/media/`;
  if (!uri.startsWith(base)) return [];
  if (!listing || Date.now() - listing.at > 30000) {
    const r = await fetch(base).catch(() => null);
    const files = r?.ok ? (await r.json()).files : [];
    listing = { at: Date.now(), files: Array.isArray(files) ? files : [] };
  }
  const rel = decodeURIComponent(uri.slice(base.length).split(/[?#]/)[0]);
  const stem = rel.replace(/\.[^./]+$/, "");
  const found = [];
  for (const f of listing.files) {
    const m = typeof f === "string" && f.startsWith(`${stem}.`) && f.slice(stem.length + 1).match(/^([A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*)\.vtt$/);
    if (m) found.push({ language: m[1], src: base + f.split("/").map(encodeURIComponent).join("/") });
  }
  return found;
}

async function renderCaptions() {
  const d = app.device;
  const video = $("video");
  if (captionsFor === d.media.id) return;
  captionsFor = d.media.id;
  for (const t of [...video.querySelectorAll("track")]) t.remove();
  const tracks = await sidecars(uriFor(d.media));
  for (const t of tracks) video.append(el("track", { kind: "subtitles", srclang: t.language, label: languageName(t.language), src: t.src }));
  const langs = tracks.map((t) => t.language);
  // The language the session had captions in, else this TV's own.
  const wanted = d.subtitle?.language;
  const preferred = () => wanted ?? navigator.languages.map((l) => langs.find((x) => l.toLowerCase().startsWith(x.toLowerCase()))).find(Boolean) ?? langs[0];
  setCaptions(wanted && langs.includes(wanted) ? wanted : null);
  $("captions").hidden = langs.length === 0;
  $("captions").onclick = () => {
    const showing = [...video.textTracks].find((t) => t.mode === "showing");
    setCaptions(showing ? null : preferred());
  };
}

/** "en" as people read it here: "English". */
function languageName(code) {
  try {
    return new Intl.DisplayNames([navigator.language], { type: "language" }).of(code) ?? code;
  } catch {
    return code;
  }
}

function setCaptions(lang) {
  for (const t of $("video").textTracks) t.mode = t.language === lang ? "showing" : "disabled";
  $("captions").setAttribute("aria-pressed", String(lang !== null));
  $("captions").textContent = lang ? `Captions: ${languageName(lang)}` : "Captions off";
  // The session carries the choice (by language), so the next device shows the same.
  const d = app.device;
  if (d.active && (d.subtitle?.language ?? null) !== lang) {
    d.subtitle = lang ? { language: lang } : null;
    d.publishSession();
  }
}

$("play-pause").onclick = async () => {
  if (app.player.playing) app.player.pause();
  else await app.player.play();
};

// --- Remote control: arrows move the focus to the nearest control that way ---------------

const BACK_KEYS = new Set(["Escape", "BrowserBack", "GoBack"]);
const BACK_CODES = new Set([461, 10009]); // webOS, Tizen

function focusables() {
  return [...document.querySelectorAll("button, input, a[href], [tabindex='0']")].filter(
    (e) => !e.disabled && e.offsetParent !== null && !e.closest("[hidden]"),
  );
}

function move(dir) {
  const from = document.activeElement;
  const all = focusables();
  if (!all.includes(from)) return all[0]?.focus();
  const a = from.getBoundingClientRect();
  const ac = { x: a.left + a.width / 2, y: a.top + a.height / 2 };
  let best = null;
  for (const e of all) {
    if (e === from) continue;
    const b = e.getBoundingClientRect();
    const bc = { x: b.left + b.width / 2, y: b.top + b.height / 2 };
    const dx = bc.x - ac.x;
    const dy = bc.y - ac.y;
    const along = { ArrowRight: dx, ArrowLeft: -dx, ArrowDown: dy, ArrowUp: -dy }[dir];
    const across = dir === "ArrowRight" || dir === "ArrowLeft" ? Math.abs(dy) : Math.abs(dx);
    if (along <= 1) continue;
    const score = along + across * 2;
    if (!best || score < best.score) best = { e, score };
  }
  if (best) {
    best.e.focus();
    best.e.scrollIntoView({ block: "nearest", behavior: matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth" });
  }
}

document.addEventListener("keydown", (ev) => {
  const typing = ev.target instanceof HTMLInputElement;
  if (ev.key.startsWith("Arrow") && !(typing && (ev.key === "ArrowLeft" || ev.key === "ArrowRight"))) {
    ev.preventDefault();
    move(ev.key);
  } else if (BACK_KEYS.has(ev.key) || BACK_CODES.has(ev.keyCode) || (ev.key === "Backspace" && !typing)) {
    ev.preventDefault();
    if (!$("resume").hidden) $("resume-no").click();
    else focusFirst();
  }
});

// --- Start ----------------------------------------------------------------------------

(async () => {
  try {
    const me = await loadIdentity();
    const account = params.get("account") ?? (await keystore.get("current"));
    const membership = account ? await keystore.get(`account:${account}`) : null;
    if (membership) await startDevice(me, membership);
    else await pairScreen(me);
  } catch (e) {
    setLink(`Cannot start: ${e.message}`);
    throw e;
  }
})();
