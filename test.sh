#!/usr/bin/env bash
# The test command (README): installs the real peers the tests drive and the
# test extra, then runs ruff, mypy --strict and pytest. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")"

PEERS=(dante-server dante-client microsocks tinyproxy squid slapd ldap-utils
       oidentd haproxy socat curl tnftp netcat-openbsd openssl procps iproute2
       gcc libc6-dev libpam-runtime systemd)

need_apt=0
for p in "${PEERS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt=1
done
if [ "$need_apt" = 1 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "test.sh: Debian packages missing and not root; install: ${PEERS[*]}" >&2
        exit 1
    fi
    # Packages must not start their services: policy-rc.d exiting 101 tells
    # invoke-rc.d to skip every start.
    if [ ! -x /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${PEERS[@]}"
fi

PY=${PYTHON:-python3}
"$PY" -m pip install -q --disable-pip-version-check '.[test]'

"$PY" -m ruff check dantex tests twisted bench examples
"$PY" -m ruff format --check dantex tests twisted bench examples
"$PY" -m mypy dantex tests twisted/plugins examples bench
DANTEX_REQUIRE_PEERS=1 "$PY" -m pytest "$@"
