#!/usr/bin/env bash
# OCSP load benchmark (issue #3), run by `make bench`; results go to
# BENCHMARKS.md by hand.
#
# For an SM2 and an ECDSA P-256 instance (SQLite, software keystore) it
# issues OCSP_BENCH_CERTS certificates in-process and pre-signs their
# responses (internal/cmd/ocspbench), starts `gmtrust serve`, and runs wrk
# on loopback with scripts/ocsp-post.lua (random serials among them):
#   post   POST without nonce  (pre-signed path)
#   get    GET without nonce   (pre-signed path)
#   nonce  POST with nonce     (signed live)
# and, with the same wrk settings, the references:
#   ceiling  a trivial Go net/http handler returning one fixed response
#            (same http.Server settings as gmtrust serve)
#   openssl  `openssl ocsp -index ... -multi 2` over the same CA and
#            signer key, in a private network namespace (unshare -n) so
#            that its every-interface -port stays on loopback.
# The responder gets a warm-up run first (not reported) that asks once for
# every certificate, in order: the measured runs then see the steady state
# of a long-running responder, whose cache holds every certificate asked
# about and re-reads each from the database once it is 60 s old. The
# ceiling gets a short warm-up too; OpenSSL's responder none (see below).
#
# Environment: OCSP_BENCH_CERTS (100000), OCSP_BENCH_DURATION (15s),
# OCSP_BENCH_WARMUP (5s), OCSP_BENCH_THREADS (2), OCSP_BENCH_CONNECTIONS
# (64), OCSP_BENCH_PORT (first of 3 ports, 28480), OCSP_BENCH_KEEP=1 keeps
# the work directory, OCSP_BENCH_REUSE=DIR measures again with the
# instances a kept work directory holds (no init, no seeding).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

N=${OCSP_BENCH_CERTS:-100000}
DUR=${OCSP_BENCH_DURATION:-15s}
WARMUP=${OCSP_BENCH_WARMUP:-5s}
THREADS=${OCSP_BENCH_THREADS:-2}
CONNS=${OCSP_BENCH_CONNECTIONS:-64}
PORT=${OCSP_BENCH_PORT:-28480}
GMTRUST=$ROOT/bin/gmtrust
LUA=$ROOT/scripts/ocsp-post.lua

if ! command -v wrk >/dev/null; then
	echo "installing wrk"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get install -y wrk >/dev/null 2>&1 || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y wrk >/dev/null; }
fi
for tool in wrk openssl unshare ip curl; do
	command -v "$tool" >/dev/null || { echo "bench-ocsp: $tool is required" >&2; exit 1; }
done

if [ -n "${OCSP_BENCH_REUSE:-}" ]; then
	WORK=$OCSP_BENCH_REUSE
	OCSP_BENCH_KEEP=1
	N=$(grep '^COUNT=' "$WORK/sm2-req/records.env" | cut -d= -f2)
else
	WORK=$(mktemp -d /tmp/gmtrust-bench-ocsp.XXXXXX)
fi
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "${OCSP_BENCH_KEEP:-}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "building"
[ -x "$GMTRUST" ] || make --no-print-directory build
go build -o "$WORK/ocspbench" ./internal/cmd/ocspbench

export GMTRUST_KEY_PASSPHRASE=ocsp-bench-passphrase
RESULTS=$WORK/results.txt
: >"$RESULTS"

# run_wrk LABEL MODE URL REQDIR [POST_PATH] -- one measured run; appends
# "LABEL rps p50_ms p99_ms errors" to $RESULTS.
run_wrk() {
	local label=$1 mode=$2 url=$3 dir=$4 path=${5:-/ocsp} record out
	# shellcheck disable=SC1091
	. "$dir/records.env"
	record=$POST_RECORD
	[ "$mode" = nonce ] && record=$NONCE_RECORD
	out=$(OCSP_BENCH_MODE=$mode OCSP_BENCH_DIR=$dir OCSP_BENCH_RECORD=$record OCSP_BENCH_PATH=$path \
		wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --timeout 5s -s "$LUA" "$url")
	local line
	line=$(grep '^RESULT' <<<"$out") || { echo "$out" >&2; return 1; }
	local rps p50 p99 errs st
	rps=$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$line")
	p50=$(sed -E 's/.* p50_ms=([0-9.]+).*/\1/' <<<"$line")
	p99=$(sed -E 's/.* p99_ms=([0-9.]+).*/\1/' <<<"$line")
	errs=$(sed -E 's/.* errors=([0-9]+).*/\1/' <<<"$line")
	st=$(sed -E 's/.* status_errors=([0-9]+).*/\1/' <<<"$line")
	printf '%-22s %9s req/s  p50 %7s ms  p99 %7s ms  errors %s/%s  (load %s)\n' "$label" "$rps" "$p50" "$p99" "$errs" "$st" "$(cut -d' ' -f1 /proc/loadavg)"
	echo "$label $rps $p50 $p99 $((errs + st))" >>"$RESULTS"
}

# warm URL REQDIR RECORD DURATION -- an unreported run asking for every
# certificate once, in order (for as long as DURATION allows).
warm() {
	OCSP_BENCH_MODE=warm OCSP_BENCH_DIR=$2 OCSP_BENCH_RECORD=$3 OCSP_BENCH_THREADS=$THREADS \
		wrk -t"$THREADS" -c"$CONNS" -d"$4" -s "$LUA" "$1" >/dev/null
}

wait_http() {
	for _ in $(seq 200); do
		curl -sf -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "bench-ocsp: $1 did not come up" >&2
	return 1
}

if [ -z "${OCSP_BENCH_REUSE:-}" ]; then
	for alg in sm2 ecdsa-p256; do
		echo "== $alg: init, issue $N certificates, pre-sign"
		"$GMTRUST" init --data-dir "$WORK/$alg" --algorithm "$alg" --name "OCSP Bench $alg" >/dev/null
		"$WORK/ocspbench" seed -data-dir "$WORK/$alg" -n "$N" -out "$WORK/$alg-req"
	done
fi

PORT_SRV=$PORT PORT_CEIL=$((PORT + 1)) PORT_SSL=$((PORT + 2))

echo "== ceiling: trivial Go handler, one fixed response"
"$WORK/ocspbench" ceiling -listen "127.0.0.1:$PORT_CEIL" -response "$WORK/sm2-req/one.der" >/dev/null &
PIDS+=($!)
CEIL_PID=$!
sleep 0.5
. "$WORK/sm2-req/records.env"
warm "http://127.0.0.1:$PORT_CEIL" "$WORK/sm2-req" "$POST_RECORD" "$WARMUP"
run_wrk ceiling-1 post "http://127.0.0.1:$PORT_CEIL" "$WORK/sm2-req"

for alg in sm2 ecdsa-p256; do
	echo "== $alg: gmtrust serve"
	GMTRUST_LISTEN=127.0.0.1:$PORT_SRV GMTRUST_OCSP_CACHE_ENTRIES=$((2 * N)) \
		"$GMTRUST" serve --data-dir "$WORK/$alg" --log-level warn >"$WORK/$alg-serve.log" 2>&1 &
	SRV_PID=$!
	PIDS+=($SRV_PID)
	wait_http "http://127.0.0.1:$PORT_SRV/healthz"
	. "$WORK/$alg-req/records.env"
	# The check that it answers what it should, before measuring.
	serial=$(head -1 "$WORK/$alg-req/index.txt" | cut -f4)
	openssl ocsp -issuer "$WORK/$alg-req/issuing.pem" -serial "0x$serial" -url "http://127.0.0.1:$PORT_SRV/ocsp" \
		-no_nonce -noverify 2>/dev/null | grep -q ": good" || { echo "gmtrust does not answer good" >&2; exit 1; }
	# Long enough to ask for every certificate once at a few thousand
	# requests per second; then it goes round again (cache hits).
	warm "http://127.0.0.1:$PORT_SRV" "$WORK/$alg-req" "$POST_RECORD" "$((N / 4000 + 5))s"
	run_wrk "$alg-post" post "http://127.0.0.1:$PORT_SRV" "$WORK/$alg-req"
	run_wrk "$alg-get" get "http://127.0.0.1:$PORT_SRV" "$WORK/$alg-req"
	run_wrk "$alg-nonce" nonce "http://127.0.0.1:$PORT_SRV" "$WORK/$alg-req"
	kill "$SRV_PID"
	wait "$SRV_PID" 2>/dev/null || true

	echo "== $alg: openssl ocsp -multi 2 (in a private network namespace)"
	sigopt=()
	[ "$alg" = sm2 ] && sigopt=(-rmd sm3 -rsigopt distid:1234567812345678)
	d=$WORK/$alg-req
	# Everything runs inside the namespace: OpenSSL binds every interface
	# of it, which only has loopback. It is polled with real OCSP requests
	# (a bare TCP connect makes it spin), and its -multi parent ignores a
	# lone SIGTERM, so the children are stopped first. No warm-up run: it
	# has no cache to fill, and the sockets wrk leaves connected but silent
	# when a run ends would wedge both of its processes.
	unshare -n env D="$d" PORT_SSL="$PORT_SSL" SERIAL="$serial" SIGOPT="${sigopt[*]}" \
		THREADS="$THREADS" CONNS="$CONNS" DUR="$DUR" LUA="$LUA" \
		RECORD="$POST_RECORD" bash -c '
		set -euo pipefail
		ip link set lo up
		cd "$D"
		# shellcheck disable=SC2086
		openssl ocsp -index index.txt -CA issuing.pem -rsigner ocsp.pem -rkey ocsp.key $SIGOPT \
			-port "$PORT_SSL" -ndays 1 -multi 2 >openssl.log 2>&1 &
		pid=$!
		stop() { kill $(pgrep -P "$pid") 2>/dev/null || true; sleep 0.2; kill -9 "$pid" 2>/dev/null || true; }
		trap stop EXIT
		for _ in $(seq 200); do
			if openssl ocsp -issuer issuing.pem -serial "0x$SERIAL" -url "http://127.0.0.1:$PORT_SSL/" -no_nonce -noverify 2>/dev/null | grep -q ": good"; then
				ok=1; break
			fi
			sleep 0.1
		done
		[ "${ok:-}" = 1 ] || { echo "openssl ocsp did not answer good" >&2; cat openssl.log >&2; exit 1; }
		OCSP_BENCH_MODE=post OCSP_BENCH_DIR=. OCSP_BENCH_RECORD=$RECORD OCSP_BENCH_PATH=/ \
			wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --timeout 5s -s "$LUA" "http://127.0.0.1:$PORT_SSL" | grep "^RESULT" >openssl.result
	'
	line=$(cat "$d/openssl.result")
	rps=$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$line")
	p50=$(sed -E 's/.* p50_ms=([0-9.]+).*/\1/' <<<"$line")
	p99=$(sed -E 's/.* p99_ms=([0-9.]+).*/\1/' <<<"$line")
	errs=$(sed -E 's/.* errors=([0-9]+).*/\1/' <<<"$line")
	st=$(sed -E 's/.* status_errors=([0-9]+).*/\1/' <<<"$line")
	printf '%-22s %9s req/s  p50 %7s ms  p99 %7s ms  errors %s/%s  (load %s)\n' "openssl-$alg" "$rps" "$p50" "$p99" "$errs" "$st" "$(cut -d' ' -f1 /proc/loadavg)"
	echo "openssl-$alg $rps $p50 $p99 $((errs + st))" >>"$RESULTS"
done

echo "== ceiling again"
. "$WORK/sm2-req/records.env"
run_wrk ceiling-2 post "http://127.0.0.1:$PORT_CEIL" "$WORK/sm2-req"
kill "$CEIL_PID"

echo
echo "== summary (wrk -t$THREADS -c$CONNS -d$DUR, $N certificates, random serials, SHA-1 CertIDs)"
awk '
	{ rps[$1] = $2; p50[$1] = $3; p99[$1] = $4 }
	END {
		ceil = rps["ceiling-1"] > rps["ceiling-2"] ? rps["ceiling-1"] : rps["ceiling-2"]
		printf "%-22s %10s %9s %9s\n", "", "req/s", "p50 ms", "p99 ms"
		n = split("ceiling-1 ceiling-2 sm2-post sm2-get sm2-nonce openssl-sm2 ecdsa-p256-post ecdsa-p256-get ecdsa-p256-nonce openssl-ecdsa-p256", order, " ")
		for (i = 1; i <= n; i++) { k = order[i]; if (k in rps) printf "%-22s %10.0f %9.3f %9.3f\n", k, rps[k], p50[k], p99[k] }
		printf "\nratios (ceiling = the higher of its two runs, %.0f req/s):\n", ceil
		printf "  sm2 POST pre-signed / ceiling        %5.1f%%   (target >= 70%%)\n", 100 * rps["sm2-post"] / ceil
		printf "  sm2 GET pre-signed / ceiling         %5.1f%%\n", 100 * rps["sm2-get"] / ceil
		printf "  ecdsa POST pre-signed / ceiling      %5.1f%%\n", 100 * rps["ecdsa-p256-post"] / ceil
		printf "  sm2 POST pre-signed / OpenSSL SM2    %5.1fx   (target >= 15x)\n", rps["sm2-post"] / rps["openssl-sm2"]
		printf "  ecdsa POST pre-signed / OpenSSL ECDSA %5.1fx\n", rps["ecdsa-p256-post"] / rps["openssl-ecdsa-p256"]
		printf "  sm2 nonce / OpenSSL SM2              %5.1fx   (nonce target >= 10000 req/s)\n", rps["sm2-nonce"] / rps["openssl-sm2"]
	}' "$RESULTS"
