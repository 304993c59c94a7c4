#!/bin/sh
# check_process.sh NAME [MIN]: a Nagios plugin that is critical unless at least MIN (default 1)
# processes named NAME are running. NAME is the process name as ps -e and pgrep -x see it,
# which the kernel cuts to 15 characters. Read from /proc, else with pgrep.
#
#   PROCS OK - 2 processes named mythbackend | procs=2;;1:;0
name=$1
min=${2:-1}
if [ -z "$name" ]; then
    echo "PROCS UNKNOWN - usage: check_process.sh NAME [MIN]"
    exit 3
fi
case $min in
'' | *[!0-9]*)
    echo "PROCS UNKNOWN - MIN must be a whole number, not \"$min\""
    exit 3
    ;;
esac
short=$(printf '%.15s' "$name")
count=0
if [ -r /proc/self/comm ]; then
    for comm_file in /proc/[0-9]*/comm; do
        pid=${comm_file#/proc/}
        pid=${pid%/comm}
        # Not this script itself.
        [ "$pid" = "$$" ] && continue
        # A process may be gone by now.
        { IFS= read -r comm <"$comm_file"; } 2>/dev/null || continue
        [ "$comm" = "$short" ] && count=$((count + 1))
    done
elif command -v pgrep >/dev/null 2>&1; then
    count=$(pgrep -x -- "$short" | grep -cv "^$$\$")
else
    echo "PROCS UNKNOWN - neither /proc nor pgrep is available"
    exit 3
fi
if [ "$count" -eq 1 ]; then what=process; else what=processes; fi
if [ "$count" -ge "$min" ]; then
    echo "PROCS OK - $count $what named $name | procs=$count;;$min:;0"
    exit 0
fi
echo "PROCS CRITICAL - $count $what named $name (expected at least $min) | procs=$count;;$min:;0"
exit 2
