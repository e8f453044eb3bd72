#!/usr/bin/env bash
# Side-by-side benchmark of wsgate, nginx, HAProxy, Caddy and no proxy.
# The -tls targets (wsgate-tls, nginx-tls, haproxy-tls, caddy-tls: the same
# proxies terminating TLS 1.3 with one self-signed certificate, dialled at
# wss://) run only the TLS_SCENARIOS and are compared with each other.
#
#   bench/compare.sh                                  # the full comparison (~40 min)
#   DURATION=1s WARMUP=0.5s ROUNDS=1 MAX_ROUNDS=1 SESSIONS=500 SETTLE=0.5s QUIET_WAIT=0 \
#     OUT=/tmp/wsbench-smoke bench/compare.sh         # a smoke run (~1 min)
#
# It installs the peers it needs from Debian's packages, builds wsgate,
# wsbench and the orchestrator (bench/compare), runs the rounds, writes
# BENCHMARKS.md (or $OUT/BENCHMARKS.md when OUT is set) with a chart and
# the raw runs, and stops every process it started, by PID.
#
# Environment (defaults in brackets):
#   DURATION [5s]  measured window per run     WARMUP [1s]   unmeasured start
#   ROUNDS [5]     kept runs wanted per cell   MAX_ROUNDS [ROUNDS+2] at most
#   BUDGET [22m]   no extra round after this   NOISE [0.10]  discard threshold
#   SESSIONS [9000] idle-mem sessions          SETTLE [5s]   idle-mem settle time
#   QUIET_WAIT [5s] before each run, wait up to this for 0.5 s under NOISE
#   SCENARIOS [all six: echo-small, echo-pipelined, stream-large, handshake-rate,
#                  idle-mem, echo-deflate]
#   TARGETS [wsgate,wsgate-tls,nginx,nginx-tls,haproxy,haproxy-tls,caddy,caddy-tls,direct]
#                  also: wsgate-1p, wsgate-tls-1p, caddy-1p, caddy-tls-1p (the Go
#                  proxies with GOMAXPROCS=1, one worker) and epoll-proto
#   TLS_SCENARIOS [echo-small,handshake-rate,idle-mem] what the -tls targets run
#   PROTO_SCENARIOS [echo-small,echo-pipelined,handshake-rate,idle-mem] what the
#                  target epoll-proto (issue 23's prototype; not in TARGETS
#                  by default) runs
#   OUT [unset]    write the report, chart and runs there instead of the repo
#   SYSCALLS [1]   then trace each scenario once per proxy with strace -c -f:
#                  system calls per operation (0 = skip)
set -euo pipefail
cd "$(dirname "$0")/.."

targets=${TARGETS:-wsgate,wsgate-tls,nginx,nginx-tls,haproxy,haproxy-tls,caddy,caddy-tls,direct}

# Peers from Debian's packages, only those missing. In a container with a
# policy-rc.d that denies service starts, nothing starts on its own; on a
# host with systemd, apt starts the packaged services on their default
# ports: this script neither uses nor stops them.
need=()
for p in nginx haproxy caddy; do
	if [[ ",$targets," == *",$p,"* || ",$targets," == *",$p-tls,"* ]] && ! command -v "$p" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$p ]]; then
		need+=("$p")
	fi
done
if [[ ${SYSCALLS:-1} != 0 ]] && ! command -v strace >/dev/null 2>&1; then
	need+=(strace)
fi
if ((${#need[@]})); then
	echo "compare: installing ${need[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"

work=$(mktemp -d /tmp/wsbench-compare.XXXXXX)
cleanup() {
	# The orchestrator stops what it started; this catches what a crash of
	# it left behind. Only PIDs it recorded, each checked to be ours.
	if [[ -f $work/pids ]]; then
		while read -r pid; do
			if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
				case "$(cat /proc/"$pid"/comm 2>/dev/null)" in
				wsbench | wsgate | nginx | haproxy | caddy | epollproto) kill -TERM "$pid" 2>/dev/null || true ;;
				esac
			fi
		done <"$work/pids"
	fi
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/bin/wsgate" ./cmd/wsgate
go build -o "$work/bin/wsbench" ./cmd/wsbench
go build -o "$work/bin/compare" ./bench/compare
go build -o "$work/bin/epollproto" ./bench/epollproto   # the target epoll-proto (issue 23's prototype)

md=BENCHMARKS.md
out=bench/out
if [[ -n ${OUT:-} ]]; then
	mkdir -p "$OUT"
	md=$OUT/BENCHMARKS.md
	out=$OUT
fi

cmdline="bench/compare.sh"
for v in DURATION WARMUP ROUNDS MAX_ROUNDS BUDGET NOISE QUIET_WAIT SESSIONS SETTLE SCENARIOS TARGETS TLS_SCENARIOS PROTO_SCENARIOS SYSCALLS OUT; do
	if [[ -n ${!v:-} ]]; then cmdline="$v=${!v} $cmdline"; fi
done

"$work/bin/compare" \
	-bin "$work/bin" -work "$work/run" -configs bench/configs -out "$out" -md "$md" \
	-duration "${DURATION:-5s}" -warmup "${WARMUP:-1s}" \
	-rounds "${ROUNDS:-5}" -max-rounds "${MAX_ROUNDS:-$((${ROUNDS:-5} + 2))}" -budget "${BUDGET:-22m}" \
	-noise "${NOISE:-0.10}" -quiet-wait "${QUIET_WAIT:-5s}" -sessions "${SESSIONS:-9000}" -settle "${SETTLE:-5s}" \
	-scenarios "${SCENARIOS:-echo-small,echo-pipelined,stream-large,handshake-rate,idle-mem,echo-deflate}" \
	-syscalls="$([[ ${SYSCALLS:-1} == 0 ]] && echo false || echo true)" -targets "$targets" -tls-scenarios "${TLS_SCENARIOS:-echo-small,handshake-rate,idle-mem}" \
	-proto-scenarios "${PROTO_SCENARIOS:-echo-small,echo-pipelined,handshake-rate,idle-mem}" -command "$cmdline"
