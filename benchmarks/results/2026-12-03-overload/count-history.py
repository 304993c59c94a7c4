#!/usr/bin/env python3
"""Count node_down / node_suspect events straight from the history databases of a kept
peerbench run dir (RUN_DIR/plain/nX/history.db), split at the load window, as `peerbench
overload` does from the API. For a run whose daemons answered their API too slowly to be read
(the driver was stopped and the daemons were sent SIGTERM first).

    count-history.py RUN_DIR LOAD_START LOAD_END RECOVERY_END   (times: HH:MM:SS UTC, 2026-12-03)
"""
import collections, datetime, glob, sqlite3, sys

run_dir, *times = sys.argv[1:]
day = datetime.date(2026, 12, 3)
ms = [datetime.datetime.combine(day, datetime.time.fromisoformat(t), datetime.timezone.utc).timestamp() * 1000 for t in times]
load_start, load_end, rec_end = ms
phase = lambda t: "startup" if t < load_start else "window" if t < load_end else "after" if t <= rec_end else "later"
downs, susp, refuted, kinds = (collections.Counter() for _ in range(4))
observers, nodes = 0, set()
dbs = sorted(glob.glob(f"{run_dir}/plain/n*/history.db"))
for db in dbs:
    me = db.split("/")[-2]
    rows = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute(
        "SELECT kind, node, at, incarnation FROM events").fetchall()
    kinds.update(r[0] for r in rows)
    declared, mine = set(), 0
    for kind, node, at, inc in rows:
        if node == me:
            continue
        if kind == "node_down":
            downs[phase(at)] += 1
            declared.add((node, inc))
            mine += 1
            if at >= load_start:
                nodes.add(node)
        elif kind == "node_suspect":
            susp[phase(at)] += 1
    for kind, node, at, inc in rows:
        if kind == "node_suspect" and node != me and (node, inc) not in declared:
            refuted[phase(at)] += 1
    observers += mine > 0
print(f"history databases read: {len(dbs)}")
print(f"events by kind (all, own included): {dict(sorted(kinds.items()))}")
for name, c in (("node_down about others", downs), ("node_suspect about others", susp),
                ("  of which refuted (no node_down of that node and incarnation)", refuted)):
    print(f"{name}: startup {c['startup']}, window {c['window']}, after (to recovery end) {c['after']}, later (while the driver read the APIs) {c['later']}")
print(f"observers with at least one node_down: {observers}; distinct nodes declared down from the window on: {len(nodes)}")
