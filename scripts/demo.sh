#!/usr/bin/env bash
# The foundation end to end: the embedded broker, a session published through the library,
# and `continuity sessions` showing it. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/debug/continuity
example=target/debug/examples/scripted_session
account=demo
pids=()
work=$(mktemp -d)
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Start the embedded broker (a free port on loopback)"
mkfifo "$work/broker.out"
"$bin" broker --listen 127.0.0.1:0 >"$work/broker.out" &
pids+=($!)
read -r line <"$work/broker.out"
echo "$line"
url=$(grep -o 'mqtt://[^ ]*' <<<"$line")

step "2. A phone plays a film, published through the library"
"$example" "$url" "$account" &
pids+=($!)
sleep 1.5

step "3. continuity sessions: what plays where (position extrapolated to now)"
"$bin" --broker "$url" --account "$account" sessions
sleep 1
echo
"$bin" --broker "$url" --account "$account" sessions

step "4. After the phone seeks and pauses"
sleep 2.3
"$bin" --broker "$url" --account "$account" sessions
echo
"$bin" --broker "$url" --account "$account" devices

step "5. The same, as JSON for scripts"
"$bin" --broker "$url" --account "$account" sessions --json | head -n 40

wait "${pids[1]}" 2>/dev/null || true
step "6. The phone left: its last state stays on the broker, marked offline"
"$bin" --broker "$url" --account "$account" devices
echo
echo "Demo finished; every process it started is stopped."
