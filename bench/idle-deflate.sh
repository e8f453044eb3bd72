#!/usr/bin/env bash
# Idle memory with compression (README "Compression"): 9,000 idle sessions
# through wsgate that each exchanged one compressed 1 KiB JSON message,
# against 9,000 that exchanged it uncompressed, with context_takeover false
# and true. Each run starts a fresh wsgate and measures its RSS growth per
# session (wsbench idle-mem); the runs of a round are interleaved so that
# the figures compared come from the same conditions.
#
#   bench/idle-deflate.sh                 # 3 rounds of 9,000 sessions
#   ROUNDS=1 SESSIONS=2000 bench/idle-deflate.sh
#
# It prints one line per run and a summary of medians; every process it
# starts is stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${ROUNDS:-3}
sessions=${SESSIONS:-9000}
settle=${SETTLE:-5s}

work=$(mktemp -d /tmp/wsgate-idle-deflate.XXXXXX)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/wsgate" ./cmd/wsgate
go build -o "$work/wsbench" ./cmd/wsbench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
	for _ in $(seq 100); do
		if (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "nothing listens on $1" >&2
	return 1
}

bport=$(free_port)
"$work/wsbench" backend -listen "127.0.0.1:$bport" >"$work/backend.log" 2>&1 &
pids+=($!)
wait_port "$bport"

# run TAKEOVER MODE SIZE: one idle-mem run against a fresh wsgate.
run() {
	local takeover=$1 mode=$2 size=$3 port
	port=$(free_port)
	cat >"$work/wsgate.yaml" <<YAML
server:
  listen: "127.0.0.1:$port"
  max_pending_per_ip: 0
log:
  level: warn
  access: false
defaults:
  permessage_deflate: {enabled: true, context_takeover: $takeover}
routes:
  - name: bench
    path: /
    upstreams: ["ws://127.0.0.1:$bport"]
YAML
	"$work/wsgate" -config "$work/wsgate.yaml" >"$work/wsgate.log" 2>&1 &
	local gpid=$!
	pids+=("$gpid")
	wait_port "$port"
	sleep 0.5
	local out
	out=$("$work/wsbench" run -scenario idle-mem -url "ws://127.0.0.1:$port" -sessions "$sessions" \
		-settle "$settle" -size "$size" -deflate "$mode" -pid "$gpid")
	kill -TERM "$gpid"
	wait "$gpid" 2>/dev/null || true
	local kib errors
	kib=$(sed -n 's/.*"kib_per_session":\([0-9.]*\).*/\1/p' <<<"$out")
	errors=$(sed -n 's/.*"errors":\([0-9]*\).*/\1/p' <<<"$out")
	echo "context_takeover=$takeover client=$mode size=$size kib_per_session=$kib errors=$errors"
	echo "$takeover $mode $size $kib" >>"$work/results"
}

for r in $(seq "$rounds"); do
	echo "round $r" >&2
	run false off 1024
	run false no_context_takeover 1024
	run true off 1024
	run true context_takeover 1024
	# The worst case of context takeover: a message larger than the
	# window, so each direction keeps a full 32 KiB dictionary.
	run true off 40960
	run true context_takeover 40960
done

echo
echo "medians over $rounds round(s), $sessions sessions each (KiB per idle session, RSS growth):"
python3 - "$work/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    t, m, size, k = line.split()
    rows.setdefault((t, m, size), []).append(float(k))
for (t, m, size), v in rows.items():
    print(f"  context_takeover={t:5} client={m:20} {size:>6} B  {statistics.median(v):7.2f}  (runs: {', '.join(f'{x:.2f}' for x in v)})")
def med(*k): return statistics.median(rows[k])
print(f"  compressed - uncompressed, context_takeover=false, 1 KiB:  {med('false','no_context_takeover','1024') - med('false','off','1024'):+.2f} KiB")
print(f"  compressed - uncompressed, context_takeover=true, 1 KiB:   {med('true','context_takeover','1024') - med('true','off','1024'):+.2f} KiB")
print(f"  compressed - uncompressed, context_takeover=true, 40 KiB:  {med('true','context_takeover','40960') - med('true','off','40960'):+.2f} KiB")
PY
