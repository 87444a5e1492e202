#!/usr/bin/env python3
# A fake `dolmen serve` that only speaks the admin API: exercises the network-fault nemesis
# (PUT/DELETE /debug/network-faults, rule shapes asserted) without a server that has it.
# Thrift calls are refused, so every operation fails and the checkers say Unknown.
#   dolmen-chaos run --dolmen crates/chaos/testdata/fake-dolmen.py \
#       --faults partition,drop,delay,duplicate --workloads register --clients 2 --duration 20s
# Each node's log (logs/node-<i>.log) lists the rules it received.
import json, sys, tomllib, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
cfg = tomllib.load(open(sys.argv[sys.argv.index("--config") + 1], "rb"))
node = cfg["deployment"]["instance_id"]
rules = []
applied = [100]
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        p = self.path
        if p == "/health" or p == "/ready": 
            self.send_response(200); self.send_header("content-length", "3"); self.end_headers(); self.wfile.write(b"ok\n")
        elif p == "/status":
            self.send(200, {"node_id": node, "leader": 0, "term": 1, "applied_version": applied[0], "raft": {"role": "leader" if node == 0 else "follower"}})
        elif p == "/debug/network-faults": self.send(200, {"rules": rules})
        elif p.startswith("/state/digest"):
            v = int(p.split("=")[1]); self.send(200, {"version": v, "digest": "00000000000000aa"})
        else: self.send(404, {"error": "no " + p})
    def do_PUT(self):
        n = int(self.headers.get("content-length", 0)); body = json.loads(self.rfile.read(n))
        assert isinstance(body["rules"], list)
        for r in body["rules"]:
            assert r["action"] in ("drop", "delay", "duplicate"), r
            if "to" in r: assert isinstance(r["to"], int) and r["to"] != node, r
        rules[:] = body["rules"]
        print("PUT rules", json.dumps(rules), flush=True)
        self.send(200, {"rules": rules})
    def do_DELETE(self):
        rules.clear(); print("DELETE rules", flush=True); self.send(200, {"rules": []})
    def do_POST(self): self.send(200, {"outcome": "changed"})
port = cfg["server"]["admin_port"]
print(f"dolmen ready: node={node}", flush=True)
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
