#!/usr/bin/env bash
# The main demo: a phone hands its playback to a TV.
#
# Starts the embedded broker, pairs a "TV", a "phone" and this terminal (the remote) so that
# everything on the broker is sealed, then a "TV" player (idle) and a "phone" player on a
# generated clip with a visible timecode, plays a few seconds on the phone, hands off to the
# TV, and prints a timeline with the handoff latency, the position error and the clock
# offset. Writes the phone's last frame and the TV's first frame as PNGs. Stops everything
# it started, and ends by itself in well under a minute.
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

step "1. A 30 s clip with a visible timecode"
gst-launch-1.0 -q videotestsrc num-buffers=750 pattern=smpte \
    ! video/x-raw,width=640,height=360,framerate=25/1 \
    ! timeoverlay font-desc="Sans 36" halignment=center valignment=center \
    ! theoraenc ! oggmux name=mux ! filesink location="$out/clip.ogg" \
    audiotestsrc num-buffers=1292 ! audio/x-raw,rate=44100,channels=1 ! vorbisenc ! mux.
echo "$out/clip.ogg"

step "2. The embedded broker (a free port on loopback)"
mkfifo "$out/broker.fifo"
# Addresses are explicit here: nothing needs advertising on the LAN (see `broker=auto`).
"$bin" broker --no-advertise --listen 127.0.0.1:0 >"$out/broker.fifo" &
pids+=($!)
read -r line <"$out/broker.fifo"
echo "$line"
url=$(grep -o 'mqtt://[^ ]*' <<<"$line")
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

step "4. A TV, idle, and a phone that plays the clip (two processes)"
log "start TV and phone"
"${base[@]}" --config-dir "$out/tv" play --no-advertise --device-name TV --device-class tv \
    --snapshot-dir "$out" >"$out/tv.log" 2>&1 &
pids+=($!)
"${base[@]}" --config-dir "$out/phone" play --no-advertise "$out/clip.ogg" --device-name Phone \
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

step "6. Timeline (seconds from the start; wall clocks of the three processes)"
cat "$out/demo.log" "$out/phone.log" "$out/tv.log" | grep '^\[' | sort -n -k1.2 |
    awk 'NR == 1 { split($1, a, "["); t0 = a[2] }
         { split($1, a, "["); t = a[2]; sub(/^\[[^ ]* /, ""); printf "%7.3f  %s\n", t - t0, $0 }'

json() { grep "\"$1\"" "$out/transfer.json" | head -1 | sed 's/.*: *//; s/,$//'; }
echo
printf 'handoff latency (request to TV playing): %.1f ms\n' "$(json latency_ms)"
printf 'position error (TV first frame vs phone): %+.1f ms\n' "$(json position_error_ms)"
printf 'clock offset (phone minus TV, measured):  %+.1f ms\n' "$(json clock_offset_ms)"

step "7. The frames on both sides of the switch"
ls -1 "$out"/phone-last-before-pause.png "$out"/tv-first-after-handoff.png
echo "Open them side by side: the timecodes match."

cleanup
pids=()
echo
echo "Demo finished in ${SECONDS} s; every process it started is stopped."
