"""A fake Consul agent for wasp's discovery tests.

Imitates the one Consul HTTP API wasp uses, as documented at
https://developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service
and https://developer.hashicorp.com/consul/api-docs/features/blocking :

  GET /v1/health/service/:service?passing&tag=T&dc=D&index=N&wait=Ns
    -> 200, a JSON array of {"Node": {...}, "Service": {...}, "Checks": [...]}
       entries, with the X-Consul-Index header. With index=N (N > 0) and
       N equal to the current index, the answer is held until the index
       changes or `wait` runs out (Consul's blocking query). An unknown
       service is 200 with [] (Consul does not 404 it).

Consul itself cannot be installed on the test machines; this is why it
exists. Test-only control endpoints (not Consul's):

  PUT  /_fake/services/:service   body: JSON array of instances
       {"id", "address", "node_address", "port", "tags", "passing"};
       bumps the index (or sets it to ?index=N, to make it go backwards)
  PUT  /_fake/malformed           the next answers are not JSON
  GET  /_fake/requests            every query received, with its token

Run: python3 consul.py [PORT]; prints the port it listens on.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

lock = threading.Condition()
state = {"index": 1, "services": {}, "malformed": False, "requests": []}


def entry(inst):
    return {
        "Node": {"ID": "n-" + inst.get("id", "x"), "Node": "node-" + inst.get("id", "x"),
                 "Address": inst.get("node_address", ""), "Datacenter": "dc1"},
        "Service": {"ID": inst.get("id", "x"), "Service": "svc", "Tags": inst.get("tags", []),
                    "Address": inst.get("address", ""), "Port": inst.get("port", 0),
                    "Meta": {}, "Weights": {"Passing": 1, "Warning": 1}},
        "Checks": [{"Status": "passing" if inst.get("passing", True) else "critical"}],
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n)

    def do_GET(self):
        url = urlparse(self.path)
        q = parse_qs(url.query, keep_blank_values=True)
        if url.path == "/_fake/requests":
            with lock:
                return self.send(200, state["requests"])
        prefix = "/v1/health/service/"
        if not url.path.startswith(prefix):
            return self.send(404, b"not found")
        name = url.path[len(prefix):]
        with lock:
            state["requests"].append({"service": name, "query": url.query,
                                      "token": self.headers.get("X-Consul-Token")})
            want = int(q.get("index", ["0"])[0] or 0)
            wait = q.get("wait", ["300s"])[0]
            seconds = float(wait[:-1]) if wait.endswith("s") else 300.0
            deadline = time.monotonic() + min(seconds, 600.0)
            while want > 0 and want == state["index"]:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                lock.wait(left)
            if state["malformed"]:
                return self.send(200, b"[{\"Node\": oops", [("X-Consul-Index", str(state["index"]))])
            tag = q.get("tag", [None])[0]
            out = [entry(i) for i in state["services"].get(name, [])
                   if ("passing" not in q or i.get("passing", True))
                   and (tag is None or tag in i.get("tags", []))]
            return self.send(200, out, [("X-Consul-Index", str(state["index"]))])

    def do_PUT(self):
        url = urlparse(self.path)
        q = parse_qs(url.query)
        with lock:
            if url.path == "/_fake/malformed":
                state["malformed"] = True
            elif url.path.startswith("/_fake/services/"):
                state["services"][url.path[len("/_fake/services/"):]] = json.loads(self.body())
                state["malformed"] = False
            else:
                return self.send(404, b"not found")
            state["index"] = int(q["index"][0]) if "index" in q else state["index"] + 1
            lock.notify_all()
        return self.send(200, {"index": state["index"]})


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
