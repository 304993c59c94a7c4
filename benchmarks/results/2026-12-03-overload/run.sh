#!/bin/sh
# The overload runs of 2026-12-03, one after the other, in priority order. Each run's raw
# output goes to its own file here; a run whose file already ends with its table row is
# skipped, so the script can be started again to continue.
#
#   NBWATCH_BIN=path/to/nbwatch N=128 sh benchmarks/results/2026-12-03-overload/run.sh [RUN...]
#
# RUN is one of nbwatch-poll, foca, chitchat, nbwatch-nopoll (default: all, in that order).
# POLL_THREADS (default 8) sets --poll-threads; TAG is appended to the file name (another
# nbwatch build, another thread count).
# peerbench is taken from benchmarks/peers/target/release (cargo build --release --locked).
set -u
here=$(cd "$(dirname "$0")" && pwd)
peers="$here/../../peers"
pb="$peers/target/release/peerbench"
n=${N:-128}
secs=${SECONDS_WINDOW:-120}
hogs=${HOGS:-2}
rate=${POLL_RATE:-300}
common="--n $n --seconds $secs --hogs $hogs --settle ${SETTLE:-10} --converge-timeout ${CONVERGE:-120} --recover-timeout ${RECOVER:-120}"
runs=${*:-nbwatch-poll foca chitchat nbwatch-nopoll}
for run in $runs; do
    out="$here/$run${TAG:-}-n$n.txt"
    if [ -f "$out" ] && grep -q "^| $(echo "$run" | cut -d- -f1) | $n |" "$out"; then
        echo "skip $run (done: $out)"
        continue
    fi
    case $run in
    nbwatch-poll) args="--system nbwatch --metrics-interval 5 --poll-rate $rate --poll-threads ${POLL_THREADS:-8} --nbwatch-bin ${NBWATCH_BIN:?}" ;;
    nbwatch-nopoll) args="--system nbwatch --metrics-interval 5 --nbwatch-bin ${NBWATCH_BIN:?}" ;;
    foca) args="--system foca" ;;
    chitchat) args="--system chitchat --metrics-interval 5" ;;
    *) echo "unknown run $run" >&2; exit 2 ;;
    esac
    # The binary's path is replaced by $NBWATCH_BIN in the file; its version and hash stay.
    {
        echo "# date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'); nproc $(nproc); uname -r $(uname -r); load $(cut -d' ' -f1-3 /proc/loadavg)"
        case $run in nbwatch*)
            echo "# nbwatch: $("$NBWATCH_BIN" --version 2>&1 | head -1); sha256 $(sha256sum "$NBWATCH_BIN" | cut -c1-16)" ;;
        esac
        echo "# command: peerbench overload $args $common"
        "$pb" overload $args $common
        echo "# exit $? at $(date -u '+%H:%M:%S UTC')"
    } 2>&1 | sed -u "s#${NBWATCH_BIN:-/nonexistent}#\$NBWATCH_BIN#g" > "$out"
    tail -4 "$out"
done
