#!/bin/sh
# check_mythbackend.sh [HOST [PORT [SECONDS]]]: a Nagios plugin for a MythTV backend. Ok when
# http://HOST:PORT/Status/GetStatus (default localhost:6544) answers with a status document
# within SECONDS (default 8), critical otherwise. Perfdata, when the document has them: the
# number of tuners (encoders), of tuners busy recording or streaming (encoders_busy) and of
# scheduled recordings (scheduled).
#
#   MYTHBACKEND OK - version v34.0 on localhost:6544 | encoders=2;;;0 encoders_busy=1;;;0 scheduled=12;;;0
#
# The page is fetched with curl, else wget, else bash's /dev/tcp. MYTH_FETCH=curl|wget|bash
# picks one (for testing).
host=${1:-localhost}
port=${2:-6544}
seconds=${3:-8}
url="http://$host:$port/Status/GetStatus"

fetch_curl() {
    curl -fsS --max-time "$seconds" -- "$url" 2>&1
}

fetch_wget() {
    wget -q -T "$seconds" -t 1 -O - -- "$url" 2>&1
}

# Plain HTTP/1.0 over bash's /dev/tcp: the body on success, the status line on failure.
fetch_bash() {
    HOST=$host PORT=$port timeout "$seconds" bash -c '
        exec 3<>"/dev/tcp/$HOST/$PORT" || exit 1
        printf "GET /Status/GetStatus HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n" \
            "$HOST" "$PORT" >&3
        IFS= read -r status <&3 || exit 1
        case $status in
        "HTTP/1."?" 2"*) ;;
        *) printf "%s\n" "$status"; exit 1 ;;
        esac
        while IFS= read -r header <&3; do
            [ "$header" = "$(printf "\r")" ] || [ -z "$header" ] && break
        done
        cat <&3' 2>&1
}

method=${MYTH_FETCH:-}
if [ -z "$method" ]; then
    if command -v curl >/dev/null 2>&1; then
        method=curl
    elif command -v wget >/dev/null 2>&1; then
        method=wget
    elif command -v bash >/dev/null 2>&1; then
        method=bash
    else
        echo "MYTHBACKEND UNKNOWN - none of curl, wget or bash is available"
        exit 3
    fi
fi
case $method in
curl | wget | bash) ;;
*)
    echo "MYTHBACKEND UNKNOWN - MYTH_FETCH must be curl, wget or bash, not \"$method\""
    exit 3
    ;;
esac

if ! page=$("fetch_$method"); then
    reason=$(printf '%s\n' "$page" | head -n 1)
    echo "MYTHBACKEND CRITICAL - no answer from $url${reason:+: $reason}"
    exit 2
fi
case $page in
*"<Status"*) ;;
*)
    echo "MYTHBACKEND CRITICAL - $url answered without a status document"
    exit 2
    ;;
esac

# The document is one line or many; put every tag on a line of its own ("Encoders count=...").
tags=$(printf '%s\n' "$page" | tr '\n<' ' \n')
attribute() { # attribute $2 of the first tag named $1
    printf '%s\n' "$tags" | sed -n "s/^$1 \(.* \)\{0,1\}$2=\"\([^\"]*\)\".*/\2/p" | head -n 1
}
number() { # attribute $2 of the first tag named $1, if it is a whole number
    case $(attribute "$1" "$2") in
    '' | *[!0-9]*) ;;
    *) attribute "$1" "$2" ;;
    esac
}
version=$(attribute Status version)
encoders=$(number Encoders count)
scheduled=$(number Scheduled count)
# An encoder's state is 0 when idle (TVState kState_None), else recording or streaming.
busy=$(printf '%s\n' "$tags" | grep '^Encoder[ >]' | grep -c ' state="[1-9]')

perf=""
if [ -n "$encoders" ]; then
    perf="encoders=$encoders;;;0 encoders_busy=$busy;;;0"
fi
if [ -n "$scheduled" ]; then
    perf="$perf${perf:+ }scheduled=$scheduled;;;0"
fi
echo "MYTHBACKEND OK - ${version:+version $version }on $host:$port${perf:+ | $perf}"
exit 0
