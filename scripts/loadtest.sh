#!/usr/bin/env bash
# `make loadtest`: `continuity loadtest` against a mosquitto of its own on loopback (1,000,
# 5,000 and 10,000 simulated devices, 4 per account, 1 handoff per device per hour, 20 % of
# them reconnecting at once halfway), then the embedded broker beside it. Prints each run's
# figures; LOADTEST_SIZES, LOADTEST_SECONDS and LOADTEST_SAMPLE change what runs.
set -euo pipefail
bin=${CONTINUITY_BIN:-target/release/continuity}
sizes=${LOADTEST_SIZES:-1000 5000 10000}
seconds=${LOADTEST_SECONDS:-60}
# Accounts the probe times: at one handoff per device and hour little happens in a minute, and
# 50 accounts gave from 2 to 105 steady samples from run to run; 250 give a few hundred.
sample=${LOADTEST_SAMPLE:-250}
# Every connection is a file descriptor here and one in the broker.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
need=$(( $(echo "$sizes" | tr ' ' '\n' | sort -n | tail -1) + 512 ))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    echo "error: the open-files limit is $(ulimit -n); $need are needed (as root: ulimit -Hn $need)" >&2
    exit 1
fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "error: nothing listens on port $1" >&2
    return 1
}

run() { # broker-name url pid size
    local accounts=$(( $4 / 4 ))
    echo
    echo "== $1: $4 devices =="
    "$bin" --broker "$2" loadtest --accounts "$accounts" --devices 4 --duration "$seconds" \
        --handoffs-per-hour 1 --burst 0.2 --sample "$sample" --broker-pid "$3"
}

port=$(free_port)
# Its own mosquitto, set up as docs/mosquitto.conf recommends (set_tcp_nodelay: without it a
# packet can wait 40 ms for a delayed acknowledgement), with no connection limit and $SYS
# every second (the traffic figures).
printf '%s\n' "listener $port 127.0.0.1" "allow_anonymous true" "max_connections -1" \
    "set_tcp_nodelay true" \
    "persistence false" "sys_interval 1" "max_queued_messages 10000" "log_dest none" \
    >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" &
pids+=($!)
wait_port "$port"
for n in $sizes; do run mosquitto "mqtt://127.0.0.1:$port" "${pids[0]}" "$n"; done

eport=$(free_port)
"$bin" broker --no-advertise --listen "127.0.0.1:$eport" --max-connections 20000 >"$work/embedded.log" 2>&1 &
pids+=($!)
wait_port "$eport"
for n in $sizes; do run "embedded broker" "mqtt://127.0.0.1:$eport" "${pids[1]}" "$n"; done
