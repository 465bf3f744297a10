#!/bin/sh
# health_check.sh — check zulip-event-listeners' /health endpoint, e.g. from
# the monthly cron job of the original guide (/etc/cron.d syntax):
#
#   0 3 1 * * zulip-listeners /usr/local/lib/zulip-event-listeners/health_check.sh
#
# Usage: health_check.sh [URL]
#   URL defaults to $ZULIP_EVENT_LISTENERS_HEALTH_URL, else
#   http://127.0.0.1:9187/health.
#
# Silent and exit 0 when the daemon reports "healthy". Otherwise prints one
# line with the status and the reasons, and exits
#   1  degraded (working, but something needs attention)
#   2  starting (not polling yet), unhealthy, unreachable, or an answer
#      that is not the daemon's JSON.
#
# Needs curl; parses the JSON with jq, else python3, else grep/sed.

set -eu

url=${1:-${ZULIP_EVENT_LISTENERS_HEALTH_URL:-http://127.0.0.1:9187/health}}
name=zulip-event-listeners

if ! command -v curl >/dev/null 2>&1; then
    echo "$name: cannot check $url: curl is not installed"
    exit 2
fi

# The body, then the HTTP status code on a line of its own. No --fail: a
# 503 still carries the JSON with the reasons.
if ! resp=$(curl --silent --show-error --max-time 10 \
    --write-out '\n%{http_code}' --url "$url" 2>&1); then
    err=$(printf '%s\n' "$resp" | grep '^curl:' | head -n 1 || true)
    echo "$name: unreachable at $url: ${err:-curl failed}"
    exit 2
fi
code=$(printf '%s\n' "$resp" | tail -n 1)
body=$(printf '%s\n' "$resp" | sed '$d')

# parse FIELD: prints the status, or the reasons joined with "; ".
# Fails (non-zero) when the body is not JSON.
parse() {
    if command -v jq >/dev/null 2>&1; then
        case $1 in
            status) printf '%s' "$body" | jq -er '.status | strings' ;;
            reasons) printf '%s' "$body" | jq -r '(.reasons // []) | map(tostring) | join("; ")' ;;
        esac
    elif command -v python3 >/dev/null 2>&1; then
        printf '%s' "$body" | python3 -c '
import json, sys
d = json.load(sys.stdin)
if sys.argv[1] == "status":
    s = d.get("status")
    if not isinstance(s, str):
        sys.exit(1)
    print(s)
else:
    print("; ".join(str(r) for r in d.get("reasons") or []))
' "$1"
    else
        # Good enough for the daemon's compact, one-line JSON: "status"
        # occurs once, and reasons contain neither "]" nor escaped quotes.
        case $1 in
            status)
                s=$(printf '%s' "$body" | tr -d '\n' |
                    sed -n 's/.*"status"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p')
                [ -n "$s" ] && printf '%s\n' "$s"
                ;;
            reasons)
                printf '%s' "$body" | tr -d '\n' |
                    sed -n 's/.*"reasons"[[:space:]]*:[[:space:]]*\[\([^]]*\)\].*/\1/p' |
                    sed -e 's/"[[:space:]]*,[[:space:]]*"/; /g' -e 's/^[[:space:]]*"//' -e 's/"[[:space:]]*$//'
                ;;
        esac
    fi
}

if ! status=$(parse status 2>/dev/null) || [ -z "$status" ]; then
    echo "$name: no health report at $url (HTTP $code): the answer is not the daemon's JSON"
    exit 2
fi
reasons=$(parse reasons 2>/dev/null || true)

case $status in
    healthy)
        exit 0
        ;;
    degraded)
        rc=1
        ;;
    *)
        rc=2
        ;;
esac
echo "$name: $status (HTTP $code): ${reasons:-no reason given}"
exit "$rc"
