#!/usr/bin/env bash
# fuzz.sh FUZZTIME MINIMIZETIME -- runs every fuzz target in the module
# (scripts/fuzz-targets.sh) for FUZZTIME each; fails on the first crasher.
#
# Go 1.26's fuzz coordinator can fail a run that found nothing: when
# -fuzztime expires while a worker is mid-call, "context deadline
# exceeded" escapes as the target's failure (golang/go#75804, fixed in Go
# 1.27). Such a run writes no failing input. A target that fails that way,
# and only that way, is run once more; a second failure of any kind fails.
set -uo pipefail
cd "$(dirname "$0")/.."
fuzztime=$1
minimize=$2
GO=${GO:-go}

run() { # PKG NAME -- prints the output, returns go test's status
	"$GO" test -run='^$' -fuzz="^$2\$" -fuzztime="$fuzztime" -fuzzminimizetime="$minimize" "$1" 2>&1 | tee "$out"
	return "${PIPESTATUS[0]}"
}

# spurious OUTPUT_FILE -- the coordinator's deadline race and nothing else:
# no failing input written, and the failure's only reason is the deadline.
spurious() {
	! grep -q 'Failing input written to' "$1" &&
		[ "$(grep -A1 -- '^--- FAIL: ' "$1" | sed -n 2p | tr -d '[:space:]')" = contextdeadlineexceeded ]
}

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in $(scripts/fuzz-targets.sh); do
	pkg=${t%%:*}
	name=${t##*:}
	echo "fuzz $pkg $name for $fuzztime"
	run "$pkg" "$name" && continue
	if spurious "$out"; then
		echo "fuzz: $name stopped on Go's fuzztime deadline race (golang/go#75804) with no failing input; running it once more"
		run "$pkg" "$name" && continue
	fi
	exit 1
done
