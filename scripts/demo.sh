#!/usr/bin/env bash
# The main demo: a phone hands its playback to a TV, and the TV to a web TV in a browser.
#
# Starts the embedded broker (with the web app and the demo's folder of media), pairs a
# "TV", a "phone", this terminal (the remote) and a "Web TV" (the web app in a headless
# Chromium) so that everything on the broker is sealed, then a "TV" player (idle) and a
# "phone" player on a generated clip with a visible timecode, plays a few seconds on the
# phone, hands off to the TV, then from the TV to the web TV, and prints a timeline with the
# handoff latency, the position error and the clock offset. Writes the phone's last frame,
# the TV's first frame and the web TV's screen as PNGs. Stops everything it started, and
# ends by itself in about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/target/debug/continuity
out=$PWD/demo-out
account=demo
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

now() { date +%s.%3N; }
log() { echo "[$(now) demo] $*" | tee -a "$out/demo.log"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_for() { # file pattern seconds
    local end=$((SECONDS + $3))
    until grep -q "$2" "$1" 2>/dev/null; do
        if [ $SECONDS -ge $end ]; then echo "error: timed out waiting for '$2' in $1" >&2; exit 1; fi
        sleep 0.1
    done
}

rm -rf "$out"
mkdir -p "$out"
: >"$out/demo.log"

step "1. A 30 s clip with a visible timecode (VP8 and Vorbis in WebM: GStreamer and browsers play it)"
gst-launch-1.0 -q videotestsrc num-buffers=750 pattern=smpte \
    ! video/x-raw,width=640,height=360,framerate=25/1 \
    ! timeoverlay font-desc="Sans 36" halignment=center valignment=center \
    ! vp8enc deadline=1 cpu-used=8 keyframe-max-dist=25 target-bitrate=800000 \
    ! webmmux name=mux ! filesink location="$out/clip.webm" \
    audiotestsrc num-buffers=1292 ! audio/x-raw,rate=44100,channels=1 ! vorbisenc ! mux.
echo "$out/clip.webm"

step "2. The embedded broker, with the web app and the media folder (free ports on loopback)"
# Addresses are explicit here: nothing needs advertising on the LAN (see `broker=auto`).
"$bin" broker --no-advertise --listen 127.0.0.1:0 --web 127.0.0.1:0 --media "$out" \
    >"$out/broker.log" 2>&1 &
pids+=($!)
wait_for "$out/broker.log" "^media of" 10
cat "$out/broker.log"
url=$(grep -o 'mqtt://[^ ]*' "$out/broker.log" | head -1)
web=$(grep -o 'http://[^ ]*/$' "$out/broker.log" | head -1)
clip="${web}media/clip.webm"
# This terminal is a third device, the remote control: its own config dir.
base=("$bin" --broker "$url" --account "$account")
cli=("${base[@]}" --config-dir "$out/remote")

step "3. Pair the TV with the phone and the remote (sealed: only paired devices hear)"
pair() { # joiner-dir joiner-name
    "${base[@]}" --config-dir "$out/tv" pair --yes --no-advertise --device-name TV \
        --timeout 30 >"$out/pair-tv.log" 2>&1 &
    local host=$!
    wait_for "$out/pair-tv.log" "pair --join" 10
    # One person holds both screens here, so --yes; people compare the codes and answer y.
    "${base[@]}" --config-dir "$1" pair --join --yes --device-name "$2" --timeout 30 |
        sed "s/^/  $2: /"
    wait "$host"
    sed 's/^/  TV: /' "$out/pair-tv.log"
}
pair "$out/phone" Phone
pair "$out/remote" Remote
# The web TV: the app in a headless Chromium, paired through the TV the same way.
node web/demo.js --web "$web" --account "$account" --out "$out" --timeout 120 >"$out/web.log" 2>&1 &
pids+=($!)
wait_for "$out/web.log" "pairing: waiting" 20
"${base[@]}" --config-dir "$out/tv" pair --yes --no-advertise --device-name TV --timeout 30 \
    >"$out/pair-web.log" 2>&1
sed 's/^/  TV: /' "$out/pair-web.log"
wait_for "$out/web.log" "paired and connected" 20
sed 's/^/  /' "$out/web.log"

step "4. A TV, idle, and a phone that plays the clip (two processes)"
log "start TV and phone"
"${base[@]}" --config-dir "$out/tv" play --no-advertise --device-name TV --device-class tv \
    --snapshot-dir "$out" >"$out/tv.log" 2>&1 &
pids+=($!)
"${base[@]}" --config-dir "$out/phone" play --no-advertise "$clip" --device-name Phone \
    --device-class phone --snapshot-dir "$out" >"$out/phone.log" 2>&1 &
pids+=($!)
wait_for "$out/tv.log" "connected" 10
wait_for "$out/phone.log" "\] playing$" 10
CONTINUITY_MDNS_INTERFACE=lo "${cli[@]}" devices
sleep 4
echo
"${cli[@]}" sessions

step "5. Continue on the TV: continuity transfer --to TV"
log "continuity transfer --to TV"
"${cli[@]}" transfer --to TV --json >"$out/transfer.json"
log "transfer answered"
cat "$out/transfer.json"
wait_for "$out/tv.log" "saved" 10
wait_for "$out/phone.log" "saved" 10
sleep 2
"${cli[@]}" sessions

step "6. Continue on the web TV (a browser): continuity transfer --to \"Web TV\""
log "continuity transfer --to \"Web TV\""
"${cli[@]}" transfer --to "Web TV" --json >"$out/transfer-web.json"
log "transfer answered"
cat "$out/transfer-web.json"
wait_for "$out/web.log" "screenshot saved" 15
"${cli[@]}" sessions

step "7. Timeline (seconds from the start; wall clocks of the four processes)"
cat "$out/demo.log" "$out/phone.log" "$out/tv.log" "$out/web.log" | grep '^\[' | sort -n -k1.2 |
    awk 'NR == 1 { split($1, a, "["); t0 = a[2] }
         { split($1, a, "["); t = a[2]; sub(/^\[[^ ]* /, ""); printf "%7.3f  %s\n", t - t0, $0 }'

json() { grep "\"$2\"" "$out/$1" | head -1 | sed 's/.*: *//; s/,$//'; }
echo
printf 'phone -> TV:     latency (request to playing) %6.1f ms, position error %+6.1f ms, clock offset %+6.1f ms\n' \
    "$(json transfer.json latency_ms)" "$(json transfer.json position_error_ms)" "$(json transfer.json clock_offset_ms)"
printf 'TV -> web TV:    latency (request to playing) %6.1f ms, position error %+6.1f ms, clock offset %+6.1f ms\n' \
    "$(json transfer-web.json latency_ms)" "$(json transfer-web.json position_error_ms)" "$(json transfer-web.json clock_offset_ms)"

step "8. The frames on both sides of the switches"
ls -1 "$out"/phone-last-before-pause.png "$out"/tv-first-after-handoff.png "$out"/web-tv-after-handoff.png
echo "Open them side by side: the timecodes match. The web app itself: $web (while the demo runs;"
echo "see the README for a real TV)."

cleanup
pids=()
echo
echo "Demo finished in ${SECONDS} s; every process it started is stopped."
