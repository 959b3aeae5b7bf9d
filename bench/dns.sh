#!/bin/bash
# DNS benchmarks for docs/benchmarks.md ("DNS"). dnsperf sends the same query
# lists, every name distinct (the cache-miss path), to
#   (a) upstream  the upstream server directly (dnsmasq --synth-domain),
#   (b) pinhole   pinhole's stub for an app, with kernel set insertion before
#                 each answer (real firewall; dnsperf runs as the app's UID and
#                 its queries to 192.0.2.53:53 are redirected to the stub),
#   (c) dnsmasq   dnsmasq 2.90 forwarding to the same upstream with --nftset
#                 filling the app's set in pinhole's table from every answer
#                 (the table is in place for (a) and (c) too, so that every
#                 packet meets the same ruleset),
# once with one query outstanding (latency) and once with OUTSTANDING queries
# outstanding (throughput), COUNT times each; then the memory of a store with
# 100,000 learned addresses. Needs root, dnsperf, dnsmasq, nft, setpriv and
# taskset. Everything runs in two network namespaces the script creates and
# removes (phb-up-PID, phb-dev-PID), never in the machine's own.
#
#   bench/dns.sh
#   COUNT=5 LAT_N=20000 THR_N=100000 OUTSTANDING=100 bench/dns.sh
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-3}
LAT_N=${LAT_N:-20000}
THR_N=${THR_N:-100000}
OUTSTANDING=${OUTSTANDING:-100}
[ "$(id -u)" = 0 ] || { echo "bench/dns.sh: needs root (network namespaces, nftables)" >&2; exit 1; }
for t in dnsperf dnsmasq nft setpriv taskset ip; do
	command -v $t >/dev/null || { echo "bench/dns.sh: $t not found" >&2; exit 1; }
done
[ $((LAT_N + THR_N)) -lt 131000 ] || { echo "bench/dns.sh: LAT_N + THR_N must stay below 131000 (198.18.0.0/15)" >&2; exit 1; }

UP=phb-up-$$
DEV=phb-dev-$$
UPSTREAM=198.18.255.53
APP_UID=40100
work=$(mktemp -d /tmp/pinhole-dns-bench.XXXXXX)
chmod 755 $work # the query lists are read by the app UID
pids=()
cleanup() {
	for p in "${pids[@]}" ${dm:-} ${ph:-} ${tb:-}; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del $UP 2>/dev/null || true
	ip netns del $DEV 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM # so that the EXIT trap cleans up
# Only for commands in the foreground: a function run with & is a subshell,
# and $! would not be the process to signal.
indev() { ip netns exec $DEV "$@"; }

# Two CPUs or more: dnsperf on CPU 0, the upstream and the server under test
# on CPU 1. (dnsperf with one query outstanding paces itself badly when it
# shares a CPU with the server it measures: tens of queries per second.)
if [ "$(nproc)" -ge 2 ]; then load=(taskset -c 0); srv=(taskset -c 1); else load=(); srv=(); fi

go build -o $work/dnsbench ./bench/dnsbench

ip netns add $UP
ip netns add $DEV
ip -n $DEV link add vd type veth peer name vu netns $UP
ip -n $DEV link set lo up
ip -n $UP link set lo up
ip -n $DEV addr add 10.99.0.1/24 dev vd
ip -n $UP addr add 10.99.0.2/24 dev vu
ip -n $DEV link set vd up
ip -n $UP link set vu up
ip -n $UP addr add $UPSTREAM/32 dev lo
ip -n $DEV route add default via 10.99.0.2

ip netns exec $UP "${srv[@]}" dnsmasq --no-daemon --no-resolv --no-hosts --user=root --pid-file= --port=53 \
	--listen-address=$UPSTREAM --bind-interfaces --local=/bench.example/ \
	--synth-domain=bench.example,198.18.0.0/15,n- --local-ttl=300 --cache-size=0 --log-facility=/dev/null &
pids+=($!)

# wait_dns SERVER PORT: until a query gets any answer (10 s at most).
wait_dns() {
	for _ in $(seq 100); do
		if indev dig +time=1 +tries=1 -p "$2" @"$1" probe.bench.example 2>/dev/null | grep -q 'status:'; then return 0; fi
		sleep 0.1
	done
	echo "bench/dns.sh: no DNS answer from $1:$2" >&2
	exit 1
}
wait_dns $UPSTREAM 53

gen() { # first count
	awk -v s="$1" -v n="$2" 'BEGIN { for (i = s; i < s + n; i++) printf "n-198-%d-%d-%d.bench.example A\n", 18 + int(i / 65536), int(i / 256) % 256, i % 256 }'
}
gen 1 "$LAT_N" > $work/lat.txt
gen $((LAT_N + 1)) "$THR_N" > $work/thr.txt

results=$work/results.tsv
: > $results
{
	echo "# $(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	echo "# $(go version | cut -d' ' -f3), $(dnsmasq --version | head -1), dnsperf $(dnsperf -h 2>&1 | grep -m1 Version | awk '{print $2}')"
	echo "# lists: latency $LAT_N names (1 outstanding), throughput $THR_N names ($OUTSTANDING outstanding); load $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee $work/header

# perf LABEL SERVER PORT LIST OUTSTANDING [as-app]
perf() {
	local as=()
	[ "${6:-}" = app ] && as=(setpriv --reuid=$APP_UID --regid=$APP_UID --clear-groups)
	indev "${load[@]}" "${as[@]}" dnsperf -s "$2" -p "$3" -d "$4" -n 1 -q "$5" -t 2 -l 300 -v > $work/perf.out 2>&1 || true
	$work/dnsbench stats -label "$1" < $work/perf.out | tee -a $results
}

# wait_ready FILE: until the harness printed "ready" (10 s at most).
wait_ready() {
	for _ in $(seq 100); do grep -q ready "$1" && return 0; sleep 0.1; done
	echo "bench/dns.sh: harness not ready:" >&2
	cat $work/harness.err >&2
	exit 1
}

for rep in $(seq "$COUNT"); do
	echo "## run $rep"
	# pinhole's table (same ruleset as in the pinhole run, no stubs) is in
	# place for the upstream and dnsmasq runs too, so that every packet
	# meets the same rules; dnsmasq fills the app's set in it.
	ip netns exec $DEV $work/dnsbench table -upstream $UPSTREAM:53 -uid $APP_UID > $work/table.out 2> $work/harness.err &
	tb=$!
	wait_ready $work/table.out

	# (a) the upstream alone.
	perf upstream-latency $UPSTREAM 53 $work/lat.txt 1
	perf upstream-throughput $UPSTREAM 53 $work/thr.txt "$OUTSTANDING"

	# (c) dnsmasq --nftset into the app's set, fresh cache.
	ip netns exec $DEV "${srv[@]}" dnsmasq --no-daemon --no-resolv --no-hosts --user=root --pid-file= --port=5353 \
		--listen-address=127.0.0.1 --bind-interfaces --server=$UPSTREAM \
		--nftset=/bench.example/4#inet#pinhole#v4_bench --log-facility=/dev/null &
	dm=$!
	wait_dns 127.0.0.1 5353
	perf dnsmasq-latency 127.0.0.1 5353 $work/lat.txt 1
	perf dnsmasq-throughput 127.0.0.1 5353 $work/thr.txt "$OUTSTANDING"
	echo "dnsmasq set elements: $(indev nft list set inet pinhole v4_bench | grep -o '198\.1[89]\.[0-9]*\.[0-9]*' | wc -l)"
	kill $dm
	wait $dm 2>/dev/null || true
	kill $tb
	wait $tb 2>/dev/null || true

	# (b) pinhole: fresh store and table; dnsperf is the app.
	ip netns exec $DEV "${srv[@]}" $work/dnsbench serve -upstream $UPSTREAM:53 -uid $APP_UID -port 5400 > $work/serve.out 2> $work/harness.err &
	ph=$!
	wait_ready $work/serve.out
	perf pinhole-latency 192.0.2.53 53 $work/lat.txt 1 app
	perf pinhole-throughput 192.0.2.53 53 $work/thr.txt "$OUTSTANDING" app
	kill -USR1 $ph
	for _ in $(seq 100); do grep -q learned_entries $work/serve.out && break; sleep 0.1; done
	echo "pinhole after run: $(grep learned_entries $work/serve.out | tail -1)" | tee -a $work/pinhole-stats
	kill $ph
	wait $ph 2>/dev/null || true

	# Diagnosis: the same stub without the kernel insert (fresh store), to
	# tell what the insert costs from what forwarding through the redirect
	# costs. Latency only.
	ip netns exec $DEV "${srv[@]}" $work/dnsbench serve -insert=false -upstream $UPSTREAM:53 -uid $APP_UID -port 5400 > $work/serve.out 2> $work/harness.err &
	ph=$!
	wait_ready $work/serve.out
	perf pinhole-noinsert-latency 192.0.2.53 53 $work/lat.txt 1 app
	kill $ph
	wait $ph 2>/dev/null || true
done

echo "## memory"
indev $work/dnsbench rss -n 100000 | tee $work/rss

echo "## medians over $COUNT runs (qps; latency percentiles in microseconds)"
awk -F'\t' '{
	split($2, q, "="); lbl = $1; qps[lbl] = qps[lbl] " " q[2]
	for (i = 6; i <= 9; i++) { split($i, kv, "="); v[lbl, kv[1]] = v[lbl, kv[1]] " " kv[2]; keys[kv[1]] = i }
	lost[lbl] = lost[lbl] " " substr($5, 6); if (!(lbl in seen)) { seen[lbl] = 1; order[++nl] = lbl }
}
function med(s,   a, m, i, j, t) {
	m = split(substr(s, 2), a, " ")
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
END {
	printf "%-22s %10s %8s %8s %8s %8s %6s\n", "run", "qps", "p50", "p90", "p99", "p99.9", "lost"
	for (k = 1; k <= nl; k++) { l = order[k]
		printf "%-22s %10.0f %8.0f %8.0f %8.0f %8.0f %6s\n", l, med(qps[l]), med(v[l, "p50"]), med(v[l, "p90"]), med(v[l, "p99"]), med(v[l, "p99.9"]), med(lost[l])
	}
}' $results | tee $work/summary
echo "raw results in $work"
