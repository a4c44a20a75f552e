#!/usr/bin/env bash
# Install the Debian packages the test suite needs, only when missing:
#   docker-compose (validates docker/docker-compose.yml), chromium (headless screenshots), and PostgreSQL and
#   Redis (the distributed CeleryExecutor test; scripts/ensure-services.sh starts them).
# Idempotent and quiet: prints one line, exits 0 when everything is already present.
set -euo pipefail

# command name -> Debian package
declare -A PACKAGES=(
    [docker-compose]=docker-compose
    [chromium]=chromium
    [pg_isready]=postgresql
    [redis-server]=redis-server
)

missing=()
for cmd in docker-compose chromium pg_isready redis-server; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${PACKAGES[$cmd]}")
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "system-deps: docker-compose, chromium, postgresql and redis-server already present"
    exit 0
fi

# sudo drops the environment, so the frontend setting travels on the command line.
if [ "$(id -u)" -eq 0 ]; then
    APT=(env DEBIAN_FRONTEND=noninteractive apt-get)
elif command -v sudo >/dev/null 2>&1; then
    APT=(sudo env DEBIAN_FRONTEND=noninteractive apt-get)
else
    echo "system-deps: need root or sudo to install: ${missing[*]}" >&2
    exit 1
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { "${APT[@]}" update -qq \
        && "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "system-deps: failed to install: ${missing[*]}" >&2
    exit 1
fi
echo "system-deps: installed ${missing[*]}"
