#!/usr/bin/env bash
# Container health check without curl or wget in the image: one HTTP/1.0 GET over bash's /dev/tcp.
# Usage: healthcheck [path]   (default /healthz/live). Exit 0 when the answer is 200, 1 otherwise.
# The port is HEALTHCHECK_PORT, else the first of ASPNETCORE_HTTP_PORTS, else 8080; HEALTHCHECK_TIMEOUT (seconds,
# default 5) bounds the wait for the answer.
set -u

path="${1:-/healthz/live}"
port="${HEALTHCHECK_PORT:-${ASPNETCORE_HTTP_PORTS:-8080}}"
port="${port%%[;,]*}"

exec 3<>"/dev/tcp/127.0.0.1/${port}" || { echo "healthcheck: nothing listens on port ${port}" >&2; exit 1; }
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
# The status line is "HTTP/1.1 200 OK"; Docker's own --timeout bounds the whole check, read -t the reply.
IFS=' ' read -r -t "${HEALTHCHECK_TIMEOUT:-5}" _ status _ <&3 || { echo "healthcheck: no answer from ${path}" >&2; exit 1; }
exec 3<&-
if [[ "$status" != "200" ]]; then
    echo "healthcheck: ${path} answered ${status}" >&2
    exit 1
fi
