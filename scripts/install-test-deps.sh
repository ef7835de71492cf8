#!/usr/bin/env bash
# Installs the external programs the tests drive (OpenSSL 3 as a client,
# SoftHSM2 as a PKCS#11 token) when they are missing. CI runs as root on a
# clean Debian machine; elsewhere we only say what is missing.
set -euo pipefail
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v softhsm2-util >/dev/null || need+=(softhsm2)
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
	echo "missing: ${need[*]} — install them (apt-get install -y ${need[*]}) or run as root" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
	apt-get update >/dev/null
	apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
}
echo "installed: ${need[*]}"
