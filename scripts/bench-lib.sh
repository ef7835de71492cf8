# Helpers shared by the load benchmarks (bench-ocsp.sh, bench-issue.sh);
# sourced, not run.

# install PROGRAM PACKAGE -- installs the Debian package when the program
# is missing (CI and fresh machines run as root).
install() {
	command -v "$1" >/dev/null && return 0
	echo "installing $2"
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get install -y "$2" >/dev/null 2>&1 || { $sudo apt-get update >/dev/null && $sudo apt-get install -y "$2" >/dev/null; }
}

# field LINE NAME -- a field of a RESULT line printed by the wrk scripts.
field() { sed -E "s/.* $2=([0-9.]+).*/\1/" <<<"$1"; }

# wait_http URL -- waits up to 20 s for URL to answer 2xx.
wait_http() {
	for _ in $(seq 200); do
		curl -sf -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "$(basename "$0"): $1 did not come up" >&2
	return 1
}
