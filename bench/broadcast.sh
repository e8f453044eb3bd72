#!/usr/bin/env bash
# bench/broadcast.sh: the sessions API's broadcast benchmark (BENCHMARKS.md
# "Sessions API: broadcast"). It builds wsgate and wsbench, starts one
# wsbench backend and one wsgate with an admin listener, and runs the
# wsbench broadcast scenario for each session count: how long a broadcast
# to every tagged session takes (POST sent to the last delivery), and the
# echo RTT p99 of 16 other sessions with and without broadcasts going on.
# Then, in the same run, idle-mem against the same gateway build and,
# if BASE_BIN is set, against that binary (e.g. the commit before the
# sessions API), each from a fresh process.
#
#   bench/broadcast.sh                       # 1000 and 9000 sessions
#   SESSIONS_LIST="1000" DURATION=3s bench/broadcast.sh
#
# Environment: SESSIONS_LIST [1000 9000], DURATION [5s] (each window),
# WARMUP [1s], IDLE_SESSIONS [9000], BASE_BIN [none], OUT [stdout].
# Every process it starts is stopped by PID when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
SESSIONS_LIST=${SESSIONS_LIST:-"1000 9000"}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
IDLE_SESSIONS=${IDLE_SESSIONS:-9000}
BASE_BIN=${BASE_BIN:-}
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/wsgate" ./cmd/wsgate
go build -o "$tmp/wsbench" ./cmd/wsbench

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
backend=127.0.0.1:$(freeport)
"$tmp/wsbench" backend -listen "$backend" & pids+=($!)

# start_gateway BIN: starts BIN on fresh ports; sets gw_pid, gw_url, gw_admin.
start_gateway() {
	local port admin
	port=$(freeport)
	admin=$(freeport)
	cat >"$tmp/wsgate.yaml" <<YAML
server:
  listen: "127.0.0.1:$port"
  admin_listen: "127.0.0.1:$admin"
  max_pending_per_ip: 0
log:
  level: warn
  access: false
routes:
  - name: bench
    path: /
    upstreams: ["ws://$backend"]
YAML
	"$1" run -config "$tmp/wsgate.yaml" & gw_pid=$!
	pids+=($gw_pid)
	gw_url="ws://127.0.0.1:$port"
	gw_admin="http://127.0.0.1:$admin"
	for _ in $(seq 100); do
		curl -fs "$gw_admin/readyz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "wsgate did not start" >&2
	return 1
}
stop_gateway() {
	kill "$gw_pid" 2>/dev/null || true
	wait "$gw_pid" 2>/dev/null || true
}

for n in $SESSIONS_LIST; do
	start_gateway "$tmp/wsgate"
	"$tmp/wsbench" run -scenario broadcast -label "wsgate" -url "$gw_url" -admin "$gw_admin" \
		-sessions "$n" -duration "$DURATION" -warmup "$WARMUP" -pid "$gw_pid"
	stop_gateway
done
for bin in "$tmp/wsgate" $BASE_BIN; do
	start_gateway "$bin"
	"$tmp/wsbench" run -scenario idle-mem -label "$(basename "$bin")" -url "$gw_url" \
		-sessions "$IDLE_SESSIONS" -settle 5s -pid "$gw_pid"
	stop_gateway
done
