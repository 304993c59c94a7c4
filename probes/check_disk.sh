#!/bin/sh
# check_disk.sh [MOUNT [WARN [CRIT]]]: a Nagios plugin for the free space of the file system
# holding MOUNT (default /), in percent, counted as df counts it (space reserved for root is
# neither free nor used). Warning below WARN % free (default 20), critical below CRIT %
# (default 10).
#
#   DISK OK - 42.3% free on / (25000 MB of 59000 MB) | free_pct=42.3%;20:;10:;0;100 free=25000MB;;;0;59000
set -f
mount=${1:-/}
warn=${2:-20}
crit=${3:-10}
for n in "$warn" "$crit"; do
    case $n in
    '' | *[!0-9.]* | *.*.*)
        echo "DISK UNKNOWN - thresholds must be percentages, not \"$n\""
        exit 3
        ;;
    esac
done
# -P: one line per file system, fixed columns (size, used, available in 1024-byte blocks).
line=$(df -P -k -- "$mount" 2>/dev/null | awk 'NR == 2 { print $3, $4 }')
if [ -z "$line" ]; then
    echo "DISK UNKNOWN - cannot read the file system of $mount"
    exit 3
fi
set -- $line
awk -v used="$1" -v avail="$2" -v warn="$warn" -v crit="$crit" -v mount="$mount" 'BEGIN {
    total = used + avail
    if (total <= 0) {
        printf "DISK UNKNOWN - %s reports no size\n", mount
        exit 3
    }
    free = avail * 100 / total
    status = "OK"; code = 0
    if (free < crit) { status = "CRITICAL"; code = 2 }
    else if (free < warn) { status = "WARNING"; code = 1 }
    printf "DISK %s - %.1f%% free on %s (%.0f MB of %.0f MB) | free_pct=%.1f%%;%s:;%s:;0;100 free=%.0fMB;;;0;%.0f\n", \
        status, free, mount, avail / 1024, total / 1024, free, warn, crit, avail / 1024, total / 1024
    exit code
}'
