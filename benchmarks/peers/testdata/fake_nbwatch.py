#!/usr/bin/env python3
"""Stand-in for `nbwatch run --config FILE`, to exercise peerbench's nbwatch
adapter (config file, HTTP polling, restart under the same name) before the
real daemon exists. Not a membership protocol: every node reads the other
nodes' pid files in the shared run directory and reports a node "down" once
its pid has been gone for 1 s.

    peerbench detection --system nbwatch --nbwatch-bin testdata/fake_nbwatch.py --n 3 --kills 2
"""
import json, os, sys, time, tomllib, socket, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

cfg_path = sys.argv[sys.argv.index("--config") + 1]
with open(cfg_path, "rb") as f:
    cfg = tomllib.load(f)
name = cfg["node"]["name"]
run_dir = os.path.dirname(cfg["node"]["data_dir"].rstrip("/"))
host, port = cfg["gossip"]["listen"].rsplit(":", 1)
gossip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
gossip.bind((host, int(port)))
with open(os.path.join(run_dir, name + ".fakepid"), "w") as f:
    f.write(str(os.getpid()))
gone_since = {}
sent = {"bytes": 0, "datagrams": 0}

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False

def members():
    out = []
    for fn in sorted(os.listdir(run_dir)):
        if not fn.endswith(".fakepid"):
            continue
        n = fn[: -len(".fakepid")]
        try:
            pid = int(open(os.path.join(run_dir, fn)).read())
        except (OSError, ValueError):
            continue
        state = "alive"
        if not alive(pid):
            gone_since.setdefault((n, pid), time.time())
            if time.time() - gone_since[(n, pid)] >= 1.0:
                state = "down"
        out.append({"name": n, "addr": "", "state": state, "incarnation": pid,
                    "last_heard": 0, "is_leader": False, "metrics": {}})
    return out

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/api/v1/members":
            body = json.dumps(members()).encode()
        elif self.path == "/api/v1/stats":
            body = json.dumps({"bytes_sent": sent["bytes"], "datagrams_sent": sent["datagrams"],
                               "bytes_received": 0, "datagrams_received": 0}).encode()
        else:
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers(); return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

def chatter():
    while True:
        sent["bytes"] += 100; sent["datagrams"] += 1
        time.sleep(0.1)

threading.Thread(target=chatter, daemon=True).start()
ahost, aport = cfg["api"]["listen"].rsplit(":", 1)
ThreadingHTTPServer((ahost, int(aport)), H).serve_forever()
