#!/bin/sh
# Firewall benchmarks for docs/benchmarks.md ("Firewall"). Needs root, iperf3
# and the netnstest tools (ip, nsenter); every measurement runs in network
# namespaces the test binary creates, never in the machine's own.
#
#   bench/firewall.sh            # COUNT=5 repetitions, medians
#   COUNT=3 bench/firewall.sh
set -eu
cd "$(dirname "$0")/.."
count=${COUNT:-5}
bin=$(mktemp /tmp/pinhole-firewall-bench.XXXXXX)
raw=$(mktemp /tmp/pinhole-firewall-bench-raw.XXXXXX)
trap 'rm -f "$bin"' EXIT
go test -c -o "$bin" ./internal/firewall
echo "# $(date -u +%FT%TZ) $(uname -r) $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$raw"
(
	cd internal/firewall
	"$bin" -test.run '^$' -test.bench 'BenchmarkApply$|BenchmarkApplyLearned|BenchmarkAllow' \
		-test.benchtime 10x -test.count "$count"
	"$bin" -test.run '^$' -test.bench 'BenchmarkThroughput|BenchmarkConnectRate' \
		-test.benchtime 1x -test.count "$count"
) | grep -E '^(Benchmark|goos|goarch|cpu|PASS|FAIL|ok)' | tee -a "$raw"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$raw"

# Median (min..max) of every metric per benchmark.
awk '/^Benchmark/ {
	name = $1; sub(/-[0-9]+$/, "", name)
	for (i = 3; i < NF; i += 2) { key = name "\t" $(i+1); vals[key] = vals[key] " " $i; order[key] = ++n }
}
END {
	for (k in vals) {
		m = split(substr(vals[k], 2), v, " ")
		for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
		med = (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
		printf "%s\t%g\t(%g..%g, n=%d)\n", k, med, v[1], v[m], m
	}
}' "$raw" | sort
echo "raw results: $raw"
