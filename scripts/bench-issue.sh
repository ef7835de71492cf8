#!/usr/bin/env bash
# HTTP issuance load benchmark (issue #2), run by `make bench-ca` and
# `make bench`; the "wrk" rows of BENCHMARKS.md's CA core section come from
# it.
#
# For SQLite (the embedded default) and PostgreSQL (GMTRUST_TEST_POSTGRES
# or BENCH_POSTGRES, a fresh schema dropped afterwards) it initialises an
# SM2 instance with the real binary, starts `gmtrust serve`, and drives
# POST /api/v1/certificates with wrk on loopback: keep-alive connections
# (ISSUE_BENCH_CONNECTIONS, "8 32"), each request a JSON body with an SM2
# CSR (256 different ones, made by internal/cmd/issuebench), the admin's
# bearer token, profile staff-sign. wrk is a separate C process, so the
# client costs the two cores far less than Go benchmark clients do.
#
# Each certificate is committed before its 201, as always. After each run
# the server's own count of issued certificates (gmtrust_certificates_issued_total)
# is printed next to wrk's count of completed requests.
#
# Environment: ISSUE_BENCH_DURATION (10s), ISSUE_BENCH_THREADS (2),
# ISSUE_BENCH_CONNECTIONS ("8 32"), ISSUE_BENCH_PORT (28490),
# ISSUE_BENCH_DBS ("sqlite postgres").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DUR=${ISSUE_BENCH_DURATION:-10s}
THREADS=${ISSUE_BENCH_THREADS:-2}
CONNS=${ISSUE_BENCH_CONNECTIONS:-8 32}
PORT=${ISSUE_BENCH_PORT:-28490}
DBS=${ISSUE_BENCH_DBS:-sqlite postgres}
PG=${BENCH_POSTGRES:-${GMTRUST_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}}
GMTRUST=$ROOT/bin/gmtrust
LUA=$ROOT/scripts/issue-post.lua

# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
install wrk wrk
[[ $DBS == *postgres* ]] && install psql postgresql-client
for tool in wrk curl psql; do
	command -v "$tool" >/dev/null || { echo "bench-issue: $tool is required" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/gmtrust-bench-issue.XXXXXX)
SRV_PID=""
SCHEMA=""
cleanup() {
	[ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null || true
	wait 2>/dev/null || true
	[ -n "$SCHEMA" ] && psql -q "${PG%%\?*}" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

echo "building"
make --no-print-directory build >/dev/null
go run ./internal/cmd/issuebench -n 256 -alg sm2 -out "$WORK/bodies.txt"

export GMTRUST_KEY_PASSPHRASE=issue-bench-passphrase
SRV=http://127.0.0.1:$PORT

issued() {
	curl -s -H "Authorization: Bearer $1" "$SRV/metrics" |
		awk '/^gmtrust_certificates_issued_total/ { n += $2 } END { printf "%d\n", n }'
}

echo "nproc $(nproc), wrk -t$THREADS, $DUR per run"
for db in $DBS; do
	dir=$WORK/$db
	args=()
	if [ "$db" = postgres ]; then
		SCHEMA=gmt_bench_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
		psql -q "${PG%%\?*}" -c "CREATE SCHEMA $SCHEMA" >/dev/null
		sep='?'
		[[ $PG == *\?* ]] && sep='&'
		args=(--database "$PG${sep}search_path=$SCHEMA")
	fi
	"$GMTRUST" init --data-dir "$dir" --algorithm sm2 --name "Issue Bench" "${args[@]}" >/dev/null
	token=$(cat "$dir/admin.token")
	GMTRUST_LISTEN=127.0.0.1:$PORT "$GMTRUST" serve --data-dir "$dir" --log-level warn >"$WORK/$db-serve.log" 2>&1 &
	SRV_PID=$!
	wait_http "$SRV/healthz"
	# Warm-up, not reported: connections, caches, the first batches.
	ISSUE_BENCH_BODIES=$WORK/bodies.txt ISSUE_BENCH_TOKEN=$token wrk -t"$THREADS" -c8 -d2s -s "$LUA" "$SRV" >/dev/null
	for c in $CONNS; do
		before=$(issued "$token")
		out=$(ISSUE_BENCH_BODIES=$WORK/bodies.txt ISSUE_BENCH_TOKEN=$token wrk -t"$THREADS" -c"$c" -d"$DUR" --timeout 10s -s "$LUA" "$SRV")
		line=$(grep '^RESULT' <<<"$out") || { echo "$out" >&2; exit 1; }
		after=$(issued "$token")
		printf '%-8s sm2 clients=%-3s %7s certs/s  p50 %7s ms  p99 %7s ms  errors %s  non-201 %s  issued %s for %s requests  (load %s)\n' \
			"$db" "$c" "$(field "$line" rps)" "$(field "$line" p50_ms)" "$(field "$line" p99_ms)" \
			"$(field "$line" errors)" "$(field "$line" status_errors)" "$((after - before))" "$(field "$line" requests)" \
			"$(cut -d' ' -f1 /proc/loadavg)"
	done
	kill "$SRV_PID"
	wait "$SRV_PID" 2>/dev/null || true
	SRV_PID=""
	if [ "$db" = postgres ]; then
		psql -q "${PG%%\?*}" -c "DROP SCHEMA $SCHEMA CASCADE" >/dev/null 2>&1
		SCHEMA=""
	fi
done
