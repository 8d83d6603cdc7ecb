"""A fake Eureka server for wasp's discovery tests.

Imitates the one Eureka REST operation wasp uses, as documented at
https://github.com/Netflix/eureka/wiki/Eureka-REST-operations :

  GET /eureka/apps/:app
    -> with "Accept: application/json": 200 and
       {"application": {"name": APP, "instance": [ ... ]}}, where, as
       Eureka 1.x's codec does, "instance" is a single object (not an
       array) when the app has one instance;
    -> without it: the same as XML (Eureka's default), which wasp must
       not be sent;
    -> 404 when no instance of the app is registered (Eureka drops an app
       with its last instance).

Eureka itself cannot be installed on the test machines; this is why it
exists. Test-only control endpoints (not Eureka's):

  PUT /_fake/apps/:app   body: JSON array of instances in Eureka's shape
                         ({"instanceId", "ipAddr", "hostName", "status",
                         "port": {"$": 8080, "@enabled": "true"}, ...})
  PUT /_fake/malformed   the next answers are not JSON
  GET /_fake/requests    every app query received, with its Accept header

Run: python3 eureka.py [PORT]; prints the port it listens on.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

lock = threading.Lock()
state = {"apps": {}, "malformed": False, "requests": []}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, data, ctype="application/json"):
        if not isinstance(data, bytes):
            data = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = urlparse(self.path).path
        if path == "/_fake/requests":
            with lock:
                return self.send(200, state["requests"])
        prefix = "/eureka/apps/"
        if not path.startswith(prefix):
            return self.send(404, b"")
        app = path[len(prefix):]
        accept = self.headers.get("Accept", "")
        with lock:
            state["requests"].append({"app": app, "accept": accept})
            instances = state["apps"].get(app.upper(), [])
            malformed = state["malformed"]
        if not instances:
            return self.send(404, b"")
        if "application/json" not in accept:
            xml = "<application><name>%s</name>%s</application>" % (
                app.upper(), "".join("<instance><ipAddr>%s</ipAddr></instance>" % i.get("ipAddr") for i in instances))
            return self.send(200, xml.encode(), "application/xml")
        if malformed:
            return self.send(200, b"{\"application\": {\"instance\": [")
        shape = instances[0] if len(instances) == 1 else instances
        return self.send(200, {"application": {"name": app.upper(), "instance": shape}})

    def do_PUT(self):
        path = urlparse(self.path).path
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        with lock:
            if path == "/_fake/malformed":
                state["malformed"] = True
            elif path.startswith("/_fake/apps/"):
                state["apps"][path[len("/_fake/apps/"):].upper()] = json.loads(body)
                state["malformed"] = False
            else:
                return self.send(404, b"")
        return self.send(200, {})


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
