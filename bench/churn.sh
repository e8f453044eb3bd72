#!/usr/bin/env bash
# Churn: sessions opened, echoed once and closed with a close handshake
# (wsbench handshake-rate, which counts every session whose client got no
# Close reply or a reset instead of a FIN within 5 s as an error), beside an
# echo workload, through one wsgate. Bounded: DURATION of each, then both
# stop by themselves and so does everything this script started.
#
#   bench/churn.sh                 # 130 s: about 200,000 sessions here
#   DURATION=20 bench/churn.sh     # a short run
#
# Prints the two wsbench result lines; "errors":0 is the pass mark.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-130}
gw_port=${GW_PORT:-19080}
be_port=${BACKEND_PORT:-19100}
work=$(mktemp -d /tmp/wsgate-churn.XXXXXX)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/wsgate" ./cmd/wsgate
go build -o "$work/wsbench" ./cmd/wsbench
"$work/wsbench" backend -listen "127.0.0.1:$be_port" >"$work/backend.log" 2>&1 &
pids+=($!)
sed -e "s/{{.Listen}}/127.0.0.1:$gw_port/" -e "s/{{.Backend}}/127.0.0.1:$be_port/" \
	bench/configs/wsgate.yaml.tmpl >"$work/gw.yaml"
"$work/wsgate" run -config "$work/gw.yaml" >"$work/gw.log" 2>&1 &
gw=$!
pids+=("$gw")
sleep 1
"$work/wsbench" run -scenario echo-small -url "ws://127.0.0.1:$gw_port" -conns 16 -duration "${duration}s" >"$work/echo.json" 2>&1 &
echo_pid=$!
"$work/wsbench" run -scenario handshake-rate -url "ws://127.0.0.1:$gw_port" -duration "${duration}s" -pid "$gw"
wait "$echo_pid" || true
cat "$work/echo.json"
