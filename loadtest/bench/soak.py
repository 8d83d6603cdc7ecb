#!/usr/bin/env python3
"""Helper for soak.sh (python3 standard library only).

Subcommands:
  ports N                 print N free loopback TCP ports
  origin --port P ...     a keep-alive HTTP/1.1 origin: GET */big answers an
                          8 MiB body, anything else a 12-byte one; request
                          bodies (Content-Length or chunked) are read and counted
  wait --port P           wait until http://127.0.0.1:P/readyz answers 200
  attack --gw-port P ...  slow readers, slow writers, half-open connections and
                          abandoned uploads against the gateway, recycled as
                          the gateway cuts them; writes a JSON report
  report ...              the table soak.sh prints, and the PASS/FAIL verdict
  wsattack --gw-port P .. (MODE=ws) event floods against a WebSocket endpoint
                          and oversized pushes to the admin push API; JSON report
  wsreport ...            the MODE=ws table and the PASS/FAIL verdict

The origin answers a path ending in /slow after --slow seconds (3): the
WebSocket attackers' $default and $error backend.

Whether the gateway still holds a connection is read from /proc/net/tcp: the
gateway-side socket of a connection (local port = the gateway's port, remote
port = the attacker's) has a non-zero inode while a process holds its file
descriptor. That sees a cut even for a client that never reads (whose receive
queue is full, so the FIN never reaches it), and it sees a gateway that keeps
a socket its client has already closed (CLOSE_WAIT with an fd: a leak).
"""

import argparse
import asyncio
import collections
import json
import os
import signal
import socket
import statistics
import sys
import threading
import time
import urllib.request

# ---------------------------------------------------------------- ports


def cmd_ports(a):
    socks = []
    for _ in range(a.n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


# ---------------------------------------------------------------- origin

BIG = 8 << 20
CHUNK = b"x" * (64 << 10)


class OriginStats:
    open = 0
    accepted = 0
    requests = 0
    big_started = 0
    big_done = 0
    upload_bytes = 0
    aborted = 0
    slow = 0
    slow_s = 3.0


async def origin_conn(reader, writer, st):
    st.open += 1
    st.accepted += 1
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                return
            method, target, version = parts
            hdrs = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
            close = hdrs.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            n = 0
            if "chunked" in hdrs.get("transfer-encoding", "").lower():
                while True:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                    if size == 0:
                        while await reader.readuntil(b"\r\n") != b"\r\n":
                            pass
                        break
                    left = size
                    while left:
                        b = await reader.read(min(left, 1 << 16))
                        if not b:
                            st.aborted += 1
                            return
                        left -= len(b)
                        n += len(b)
                        st.upload_bytes += len(b)
                    await reader.readexactly(2)
            else:
                left = int(hdrs.get("content-length", "0") or 0)
                while left:
                    b = await reader.read(min(left, 1 << 16))
                    if not b:
                        st.aborted += 1
                        return
                    left -= len(b)
                    n += len(b)
                    st.upload_bytes += len(b)
            extra = b"Connection: close\r\n" if close else b""
            if target.split("?")[0].endswith("/slow"):
                st.slow += 1
                await asyncio.sleep(st.slow_s)
            if target.split("?")[0].endswith("/big"):
                st.big_started += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n%sContent-Length: %d\r\n\r\n" % (extra, BIG))
                if method != "HEAD":
                    sent = 0
                    while sent < BIG:
                        writer.write(CHUNK)
                        sent += len(CHUNK)
                        await writer.drain()
                st.big_done += 1
            else:
                body = b"received %d\n" % n if n else b"hello world\n"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n%sContent-Length: %d\r\n\r\n%s" % (extra, len(body), body))
                await writer.drain()
            st.requests += 1
            if close:
                return
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        st.aborted += 1
    except asyncio.CancelledError:
        pass  # shutting down
    finally:
        st.open -= 1
        writer.close()


def cmd_origin(a):
    st = OriginStats()
    st.slow_s = a.slow

    def dump():
        d = {k: getattr(st, k) for k in ("open", "accepted", "requests", "big_started", "big_done", "upload_bytes", "aborted", "slow")}
        tmp = a.status + ".tmp"
        with open(tmp, "w") as f:
            json.dump(d, f)
        os.replace(tmp, a.status)

    async def main():
        server = await asyncio.start_server(lambda r, w: origin_conn(r, w, st), "127.0.0.1", a.port, limit=1 << 16, backlog=1024)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with server:
            while not stop.is_set():
                if a.status:
                    dump()
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
        if a.status:
            dump()

    asyncio.run(main())


# ---------------------------------------------------------------- wait


def cmd_wait(a):
    end = time.monotonic() + a.timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{a.port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.1)
    sys.exit(f"nothing answered on 127.0.0.1:{a.port}/readyz within {a.timeout} s")


# ---------------------------------------------------------------- attack

KINDS = {
    "slow_reader": "GET /big, 2 KiB SO_RCVBUF, reads 16 bytes a second",
    "never_reader": "GET /big, 2 KiB SO_RCVBUF, never reads",
    "slow_head": "POST head trickled a byte every 300 ms, then its body",
    "slow_body": "POST head at once, 1000-byte body a byte every 300 ms",
    "half_head": "half a request head, then silence",
    "silent": "connects, sends nothing",
    "upload_hold": "POST Content-Length 8 MB, sends 1 MB, then silence (socket kept open)",
    "upload_close": "POST Content-Length 8 MB, sends 1 MB, then closes",
}


def gateway_held(port):
    """Remote ports of the sockets the gateway holds on its public `port`."""
    held = set()
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                p = line.split()
                lport = int(p[1].rsplit(":", 1)[1], 16)
                if lport != port or p[3] == "0A" or p[9] == "0":  # 0A: LISTEN
                    continue
                held.add(int(p[2].rsplit(":", 1)[1], 16))
    except OSError:
        pass
    return held


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
              "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def fd_breakdown(pid, gw_port, origin_port):
    """What the gateway's descriptors are: {"client ESTABLISHED": n, "upstream CLOSE_WAIT": n, ...}."""
    socks = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    p = line.split()
                    socks[p[9]] = (int(p[1].rsplit(":", 1)[1], 16), int(p[2].rsplit(":", 1)[1], 16), TCP_STATES.get(p[3], p[3]))
        except OSError:
            pass
    out = collections.Counter()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return {}
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            t = socks.get(link[8:-1])
            if t is None:
                out["other socket"] += 1
            elif t[2] == "LISTEN":
                out["listener"] += 1
            elif t[0] == gw_port:
                out["client " + t[2]] += 1
            elif t[1] == origin_port:
                out["upstream " + t[2]] += 1
            else:
                out["tcp " + t[2]] += 1
        elif link.startswith("anon_inode:"):
            out[link[11:].strip("[]")] += 1
        else:
            out["file"] += 1
    return dict(out)


def cpu_seconds(pid):
    """User + system CPU time of a process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


class Conn:
    def __init__(self, kind):
        self.kind = kind
        self.sock = None
        self.port = None
        self.opened = time.monotonic()
        self.seen_held = False
        self.held = False
        self.cut = None  # seconds from open to the gateway's cut
        self.how = None
        self.buf = b""
        self.status = None


class Attack:
    def __init__(self, a):
        self.a = a
        self.stop = threading.Event()
        # SIGHUP (soak.sh, once its last soak window is measured) ends the
        # soak; the end-of-soak readings are taken with the attackers still
        # attached. --duration is only a backstop.
        self.finish = threading.Event()
        self.lock = threading.Lock()
        self.live = {}  # local port -> Conn, open on our side
        self.st = {k: collections.Counter() for k in KINDS}
        self.cut_times = {k: [] for k in KINDS}
        self.statuses = {k: collections.Counter() for k in KINDS}
        self.fd_peak = 0
        self.timeline = []

    # -- bookkeeping

    def register(self, c):
        with self.lock:
            self.live[c.port] = c
            self.st[c.kind]["opened"] += 1

    def mark_cut(self, c, how):
        with self.lock:
            if c.cut is None and not self.stop.is_set():
                c.cut = time.monotonic() - c.opened
                c.how = how
                self.st[c.kind]["cut"] += 1
                self.st[c.kind]["cut: " + how] += 1
                self.cut_times[c.kind].append(c.cut)

    def release(self, c, by_us=False):
        with self.lock:
            self.live.pop(c.port, None)
            if by_us and c.cut is None:
                self.st[c.kind]["closed by attacker"] += 1
        try:
            c.sock.close()
        except OSError:
            pass

    def monitor(self):
        t0 = time.monotonic()
        next_sample = 0.0
        while not self.stop.is_set():
            held = gateway_held(self.a.gw_port)
            with self.lock:
                conns = list(self.live.values())
            for c in conns:
                c.held = c.port in held
                if c.held:
                    c.seen_held = True
                elif c.seen_held:
                    self.mark_cut(c, "fd released")
            n = fd_count(self.a.gw_pid)
            if n is not None:
                self.fd_peak = max(self.fd_peak, n)
            el = time.monotonic() - t0
            if el >= next_sample:
                self.timeline.append((round(el), n, sum(1 for c in conns if c.held)))
                next_sample += self.a.sample
            time.sleep(0.5)

    # -- socket helpers

    def connect(self, kind, rcvbuf=None):
        c = Conn(kind)
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", self.a.gw_port))
        except OSError:
            s.close()
            with self.lock:
                self.st[kind]["connect failed"] += 1
            return None
        c.sock = s
        c.port = s.getsockname()[1]
        c.opened = time.monotonic()
        self.register(c)
        return c

    def poll_read(self, c, n=4096):
        """Reads what is there without waiting; False once the gateway cut us."""
        if c.cut is not None:
            return False
        try:
            c.sock.settimeout(0)
            b = c.sock.recv(n)
        except (BlockingIOError, socket.timeout):
            return True
        except OSError:
            self.mark_cut(c, "reset")
            return False
        finally:
            try:
                c.sock.settimeout(5)
            except OSError:
                pass
        if not b:
            self.mark_cut(c, "eof")
            return False
        if c.status is None:
            c.buf += b
            if b"\r\n" in c.buf:
                line = c.buf.split(b"\r\n", 1)[0].split()
                c.status = line[1].decode() if len(line) > 1 else "?"
                with self.lock:
                    self.statuses[c.kind][c.status] += 1
                c.buf = b""
        return True

    def send(self, c, data):
        if c.cut is not None:
            return False
        try:
            c.sock.sendall(data)
            return True
        except socket.timeout:
            return True  # the gateway stopped reading: not a cut
        except OSError:
            self.mark_cut(c, "reset")
            return False

    def wait(self, c, seconds, read=True, step=0.25):
        """Sleeps `seconds`, watching for a cut; False once cut or stopping."""
        end = time.monotonic() + seconds
        while True:
            if self.stop.is_set() or c.cut is not None:
                return False
            if read and not self.poll_read(c):
                return False
            left = end - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(step, left))

    def hold(self, c, read=True):
        while self.wait(c, 1.0, read):
            pass

    # -- the attackers

    def head(self, method, path, extra=""):
        return (f"{method} {self.a.prefix}{path} HTTP/1.1\r\nHost: soak\r\nUser-Agent: soak-attacker\r\n{extra}\r\n").encode()

    def slow_reader(self):
        c = self.connect("slow_reader", rcvbuf=2048)
        if c and self.send(c, self.head("GET", "/big")):
            while self.wait(c, 1.0, read=False):
                if not self.poll_read(c, 16):
                    break
        return c

    def never_reader(self):
        c = self.connect("never_reader", rcvbuf=2048)
        if c and self.send(c, self.head("GET", "/big")):
            self.hold(c, read=False)
        return c

    def slow_head(self):
        c = self.connect("slow_head")
        if c:
            msg = self.head("POST", "/upload", "Content-Length: 100\r\n") + b"b" * 100
            for i in range(len(msg)):
                if not self.send(c, msg[i : i + 1]) or not self.wait(c, 0.3):
                    return c
            self.st["slow_head"]["completed (not cut)"] += 1
            self.wait(c, 2.0)
        return c

    def slow_body(self):
        c = self.connect("slow_body")
        if c and self.send(c, self.head("POST", "/upload", "Content-Length: 1000\r\n")):
            for _ in range(1000):
                if not self.send(c, b"b") or not self.wait(c, 0.3):
                    return c
            self.st["slow_body"]["completed (not cut)"] += 1
            self.wait(c, 2.0)
        return c

    def half_head(self):
        c = self.connect("half_head")
        if c and self.send(c, f"GET {self.a.prefix}/half HTTP/1.1\r\nHost: so".encode()):
            self.hold(c)
        return c

    def silent(self):
        c = self.connect("silent")
        if c:
            self.hold(c)
        return c

    def upload(self, kind):
        c = self.connect(kind)
        if c and self.send(c, self.head("POST", "/upload", "Content-Length: 8000000\r\n")):
            mb = b"u" * (1 << 20)
            unit = self.a.send_unit or len(mb)
            sent_all = True
            for i in range(0, len(mb), unit):
                try:
                    c.sock.sendall(mb[i : i + unit])
                except socket.timeout:  # 5 s without the gateway taking a byte
                    with self.lock:
                        self.st[kind]["upload stalled"] += 1
                    sent_all = False
                    break
                except OSError:
                    self.mark_cut(c, "reset")
                    sent_all = False
                    break
            if sent_all and kind == "upload_hold":
                self.hold(c)
        return c

    def upload_hold(self):
        return self.upload("upload_hold")

    def upload_close(self):
        return self.upload("upload_close")

    def slot(self, kind, delay):
        time.sleep(delay)
        fn = getattr(self, kind)
        while not self.stop.is_set():
            c = fn()
            if c is None:
                self.stop.wait(1.0)
                continue
            if self.stop.is_set():
                return  # left open: counted and closed at the end
            self.release(c, by_us=True)
            self.stop.wait(self.a.recycle)

    def run(self):
        a = self.a
        signal.signal(signal.SIGHUP, lambda *_: self.finish.set())
        mon = threading.Thread(target=self.monitor, daemon=True)
        mon.start()
        threads = []
        started = time.monotonic()
        for kind in [k for k in KINDS if not a.kinds or k in a.kinds.split(",")]:
            for i in range(a.per_kind):
                t = threading.Thread(target=self.slot, args=(kind, i * 0.05), daemon=True)
                t.start()
                threads.append(t)
        end = time.monotonic() + a.duration
        while not self.finish.is_set() and time.monotonic() < end:
            time.sleep(0.1)  # (a signal handler runs in this thread, between sleeps)
        attack_s = time.monotonic() - started
        # End of the soak, attackers still attached: which are held, never cut?
        held = gateway_held(a.gw_port)
        fds_end = fd_count(a.gw_pid)
        kinds_end = fd_breakdown(a.gw_pid, a.gw_port, a.origin_port)
        cpu_end = {"gateway": cpu_seconds(a.gw_pid), "origin": cpu_seconds(a.origin_pid), "attackers": sum(os.times()[:2])}
        metrics_end = admin_metrics(a.admin_port)
        self.stop.set()
        with self.lock:
            conns = list(self.live.values())
        now = time.monotonic()
        for c in conns:
            if c.port in held:
                self.st[c.kind]["open at end, held by gateway"] += 1
                if now - c.opened > a.stuck:
                    self.st[c.kind]["held longer than stuck"] += 1
            elif c.cut is None:
                self.st[c.kind]["open at end, not held"] += 1
        for t in threads:
            t.join(timeout=10)
        mon.join(timeout=2)
        for c in conns:
            try:
                c.sock.close()
            except OSError:
                pass
        # Every attacker socket is closed now: does the gateway let go?
        settle_end = time.monotonic() + a.settle
        while time.monotonic() < settle_end:
            time.sleep(0.5)
        left = gateway_held(a.gw_port)
        report = {
            "kinds": KINDS,
            "per_kind": a.per_kind,
            "attack_s": attack_s,
            "ended_by": "soak.sh" if self.finish.is_set() else "--duration",
            "stats": {k: dict(v) for k, v in self.st.items()},
            "statuses": {k: dict(v) for k, v in self.statuses.items()},
            "cut_median_s": {k: (statistics.median(v) if v else None) for k, v in self.cut_times.items()},
            "fds_peak": self.fd_peak,
            "fds_end": fds_end,
            "fds_settled": fd_count(a.gw_pid),
            "fd_kinds_end": kinds_end,
            "cpu_end": cpu_end,
            "fd_kinds_settled": fd_breakdown(a.gw_pid, a.gw_port, a.origin_port),
            "held_after_close": len(left),
            "settle_s": a.settle,
            "stuck_s": a.stuck,
            "timeline": self.timeline,
            "metrics_end": metrics_end,
        }
        with open(a.out, "w") as f:
            json.dump(report, f, indent=1)


def admin_metrics(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except Exception as e:
        return f"# metrics unavailable: {e}"


def cmd_fds(a):
    print(json.dumps({"count": fd_count(a.pid), "kinds": fd_breakdown(a.pid, a.gw_port, a.origin_port), "cpu_s": cpu_seconds(a.pid)}))


def cmd_attack(a):
    Attack(a).run()


# ---------------------------------------------------------------- report


def windows(d, phase, rounds):
    """The windows of one phase: (load summary, CPU seconds at start, at end,
    gateway sockets at the end) each."""
    out = []
    for r in range(1, rounds + 1):
        base = os.path.join(d, f"{phase}-{r}")
        end = json.load(open(base + "-end.json"))
        out.append((json.load(open(base + ".json")), json.load(open(base + "-start.json"))["cpu_s"], end["cpu_s"],
                    end["kinds"]))
    return out


def sockets(kinds):
    """'client/upstream' socket counts of an fd breakdown."""
    c = sum(n for k, n in kinds.items() if k.startswith("client "))
    u = sum(n for k, n in kinds.items() if k.startswith("upstream "))
    return f"{c}/{u}"


def cmd_report(a):
    solo = windows(a.dir, "solo", a.rounds)
    soak = windows(a.dir, "soak", a.rounds)
    att = json.load(open(a.attack))
    origin = json.load(open(a.origin)) if a.origin and os.path.exists(a.origin) else {}
    metrics = admin_metrics(a.admin_port)
    fds0 = json.load(open(a.fds_start))

    def errs(s):
        return s["errors"] + s["status_1xx"] + s["status_3xx"] + s["status_4xx"] + s["status_5xx"]

    def ms(us):
        return f"{us / 1000:.2f} ms"

    def median_of(ws, k):
        return statistics.median(s["latency"][k] for s, _, _, _ in ws)

    # The verdict compares medians of per-window p99s: one burst of the
    # box's own noise (a neighbour on the host, a daemon) spoils one window,
    # not the verdict. Every window's p99 is printed, and the worst soak
    # window against the median solo, so a degradation the median leaves
    # out is still in sight.
    p99_solo = median_of(solo, "p99_us")
    p99_soak = median_of(soak, "p99_us")
    ratio = p99_soak / max(p99_solo, 1)
    out = []
    w = out.append
    w("")
    w(f"== wasp soak: {a.binary}")
    w(f"   {a.note}")
    w("")
    w(f"{'normal traffic':<22}{'solo':>14}{'soak':>14}")
    w(f"{'  windows':<22}{len(solo):>14}{len(soak):>14}")
    w(f"{'  duration (total)':<22}{sum(s['duration_s'] for s, _, _, _ in solo):>13.0f}s{sum(s['duration_s'] for s, _, _, _ in soak):>13.0f}s")
    n_solo = sum(s["requests"] for s, _, _, _ in solo)
    n_soak = sum(s["requests"] for s, _, _, _ in soak)
    w(f"{'  requests':<22}{n_solo:>14}{n_soak:>14}")
    for q, k in (("p50", "p50_us"), ("p99", "p99_us"), ("p99.9", "p999_us")):
        w(f"{'  ' + q + ' (median)':<22}{ms(median_of(solo, k)):>14}{ms(median_of(soak, k)):>14}")
    w(f"{'  max':<22}{ms(max(s['latency']['max_us'] for s, _, _, _ in solo)):>14}{ms(max(s['latency']['max_us'] for s, _, _, _ in soak)):>14}")
    e_solo = sum(errs(s) for s, _, _, _ in solo)
    e_soak = sum(errs(s) for s, _, _, _ in soak)
    w(f"{'  errors + non-2xx':<22}{e_solo:>14}{e_soak:>14}")
    w(f"{'  p99 soak / solo':<22}{'':>14}{ratio:>14.2f}")
    w("  p99 by window, in order: solo " + " ".join(f"{s['latency']['p99_us'] / 1000:.2f}" for s, _, _, _ in solo)
      + " | soak " + " ".join(f"{s['latency']['p99_us'] / 1000:.2f}" for s, _, _, _ in soak) + " ms")
    worst = max(s["latency"]["p99_us"] for s, _, _, _ in soak) / max(p99_solo, 1)
    w(f"  worst soak window p99 / median solo p99: {worst:.2f}")
    w("  gateway client/upstream sockets at each window's end: solo "
      + " ".join(sockets(k) for _, _, _, k in solo) + " | soak " + " ".join(sockets(k) for _, _, _, k in soak))
    w("")
    w(f"attackers ({att['per_kind']} of each kind at a time, recycled when cut; attack ran "
      f"{att['attack_s']:.0f} s without a break, ended by {att['ended_by']})")
    w(f"  {'kind':<14}{'opened':>7}{'cut':>6}{'median cut':>11}{'held at end':>12}{'> ' + str(int(att['stuck_s'])) + ' s':>7}  answers / how cut")
    tot_open = tot_cut = tot_held = tot_stuck = 0
    for k in att["kinds"]:
        s = att["stats"][k]
        med = att["cut_median_s"][k]
        held = s.get("open at end, held by gateway", 0)
        stuck = s.get("held longer than stuck", 0)
        tot_stuck += stuck
        tot_open += s.get("opened", 0)
        tot_cut += s.get("cut", 0)
        tot_held += held
        how = [f"{n}x {st}" for st, n in sorted(att["statuses"][k].items())]
        how += [f"{n} {h[5:]}" for h, n in sorted(s.items()) if h.startswith("cut: ")]
        how += [f"{n} {h}" for h, n in sorted(s.items()) if h in ("closed by attacker", "completed (not cut)", "connect failed", "upload stalled")]
        w(f"  {k:<14}{s.get('opened', 0):>7}{s.get('cut', 0):>6}{(f'{med:.1f} s' if med is not None else '-'):>11}{held:>12}{stuck:>7}  {', '.join(how)}")
    w(f"  {'total':<14}{tot_open:>7}{tot_cut:>6}{'':>11}{tot_held:>12}{tot_stuck:>7}")
    for k, d in att["kinds"].items():
        w(f"    {k}: {d}")
    w("")
    if all(c is not None for _, c0, c1, _ in solo + soak for c in (c0, c1)):
        c_solo = sum(c1 - c0 for _, c0, c1, _ in solo)
        c_soak = sum(c1 - c0 for _, c0, c1, _ in soak)
        w(f"CPU: gateway {c_solo:.1f} s in solo ({c_solo / max(n_solo, 1) * 1e6:.1f} us per request), "
          f"{c_soak:.1f} s in soak ({c_soak / max(n_soak, 1) * 1e6:.1f} us per normal request, attackers included)")
        w(f"     during the soak: attackers {att['cpu_end']['attackers']:.1f} s, origin (whole run) {att['cpu_end']['origin'] or 0:.1f} s")
        w("")
    w("gateway file descriptors (ls /proc/PID/fd | wc -l)")
    w(f"  start {fds0['count']}, peak {att['fds_peak']}, end of soak with attackers attached {att['fds_end']},")
    w(f"  {att['settle_s']:.0f} s after every attacker closed {att['fds_settled']} (of which client sockets still held: {att['held_after_close']})")
    for when, kinds in (("start", fds0["kinds"]), ("end of soak", att["fd_kinds_end"]), ("after settle", att["fd_kinds_settled"])):
        w(f"  {when}: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    tl = " ".join(f"{t}s:{n}/{h}" for t, n, h in att["timeline"])
    w(f"  timeline (t: fds / attacker sockets held): {tl}")
    if origin:
        w(f"  origin: {origin.get('open')} connections open after settle, {origin.get('big_started')} /big started, {origin.get('big_done')} finished")
    w("")
    lines = [l for l in metrics.splitlines() if l.startswith("wasp_timeouts_total")]
    if lines:
        w("wasp_timeouts_total (admin /metrics after settle)")
        for l in lines:
            w("  " + l)
    else:
        w("wasp_timeouts_total: not exported by this binary")
    w("other gateway metrics (wasp_open_connections at the end of the soak, then the rest after settle; zero error kinds left out)")
    for l in att["metrics_end"].splitlines():
        if l.startswith("wasp_open_connections"):
            w("  " + l)
    for l in metrics.splitlines():
        if l.startswith(("wasp_open_connections", "wasp_connections_accepted_total", "wasp_gateway_errors_total",
                         "wasp_upstream_errors_total", "wasp_upstream_connects_total")) and not (
                l.startswith("wasp_gateway_errors_total") and l.endswith(" 0")):
            w("  " + l)
    w("")
    errors = e_solo + e_soak
    ok = ratio <= 1.5 and errors == 0
    w("rule: PASS when median p99(soak windows) / median p99(solo windows) <= 1.5 and normal traffic has 0 errors")
    w(f"{'PASS' if ok else 'FAIL'}: p99 ratio {ratio:.2f}, errors {errors}")
    print("\n".join(out))
    sys.exit(0 if ok else 1)


# ---------------------------------------------------------------- MODE=ws: floods and oversized pushes

FLOOD_KINDS = {
    "flood_invalid": "text frames that are not JSON (invalid_json + a $error call each), as fast as it can",
    "flood_valid": "valid events with no route of their own ($default to the 3 s backend), as fast as it can",
    "flood_oversize": "text frames of 4 x max_message_bytes (close 1009 expected)",
}
PUSH_KINDS = {
    "endpoint_oversize": "POST /endpoints/{flood}/messages, 8 x max_message_bytes (413 expected)",
    "connection_oversize": "POST /connections/{id of a flood client}, 8 x max_message_bytes (413 expected; 404 once gone)",
    "endpoint_small": "POST /endpoints/{flood}/messages, 40 bytes, one a second (200 expected)",
}


def ws_frame(payload, opcode=1):
    """A masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_parse(buf):
    """Complete server frames in `buf` as (opcode, payload); the rest is kept."""
    out = []
    pos = 0
    while len(buf) - pos >= 2:
        op, ln = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
        at = 2
        if ln == 126:
            if len(buf) - pos < 4:
                break
            ln, at = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
        elif ln == 127:
            if len(buf) - pos < 10:
                break
            ln, at = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
        if len(buf) - pos < at + ln:
            break
        out.append((op, bytes(buf[pos + at : pos + at + ln])))
        pos += at + ln
    del buf[:pos]
    return out


class WsAttack:
    def __init__(self, a):
        self.a = a
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.st = {k: collections.Counter() for k in FLOOD_KINDS}
        self.close_codes = {k: collections.Counter() for k in FLOOD_KINDS}
        self.error_events = {k: collections.Counter() for k in FLOOD_KINDS}
        self.lifetimes = {k: [] for k in FLOOD_KINDS}
        self.push_status = {k: collections.Counter() for k in PUSH_KINDS}
        self.ids = collections.deque(maxlen=64)
        self.fd_peak = 0
        self.timeline = []

    def monitor(self):
        t0 = time.monotonic()
        next_sample = 0.0
        while not self.stop.is_set():
            n = fd_count(self.a.gw_pid)
            if n is not None:
                self.fd_peak = max(self.fd_peak, n)
            el = time.monotonic() - t0
            if el >= next_sample:
                self.timeline.append((round(el), n))
                next_sample += self.a.sample
            time.sleep(0.5)

    def count(self, kind, what, n=1):
        with self.lock:
            self.st[kind][what] += n

    def handshake(self, kind):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", self.a.gw_port))
            s.sendall(
                f"GET {self.a.path} HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
            )
            head = b""
            while b"\r\n\r\n" not in head:
                b = s.recv(4096)
                if not b:
                    raise OSError("closed during handshake")
                head += b
        except OSError:
            s.close()
            self.count(kind, "handshake failed")
            return None, None
        head, rest = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            s.close()
            self.count(kind, "refused " + " ".join(lines[0].split()[1:2]))
            return None, None
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "x-wasp-connection-id":
                with self.lock:
                    self.ids.append(v.strip())
        self.count(kind, "opened")
        return s, bytearray(rest)

    def flood(self, kind):
        """One connection: send as fast as possible, read what comes back,
        until the gateway closes. Returns when the connection is over."""
        s, buf = self.handshake(kind)
        if s is None:
            return
        opened = time.monotonic()
        big = 4 * self.a.max_message_bytes
        if kind == "flood_oversize":
            batch = ws_frame(b"x" * big)
        else:
            batch = b"".join(
                ws_frame(b"not json %d" % i if kind == "flood_invalid" else b'{"action":"nope","n":%d}' % i)
                for i in range(32)
            )
        code = None
        sent = 0
        ended = None
        s.settimeout(0.1)
        while code is None and ended is None:
            if self.stop.is_set():
                ended = "still open at end"
                break
            try:
                s.sendall(batch)
                sent += 1 if kind == "flood_oversize" else 32
            except socket.timeout:
                pass  # the gateway stopped reading: keep reading what it says
            except OSError:
                pass  # reset or closed: the close frame may still be in the buffer
            # Read what is there (everything the gateway said so far).
            while True:
                try:
                    b = s.recv(65536, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except OSError:
                    ended = ended or "reset (close frame lost)"
                    break
                if not b:
                    ended = ended or "eof without close frame"
                    break
                buf += b
            for op, payload in ws_parse(buf):
                if op == 8:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                elif op == 1:
                    try:
                        err = json.loads(payload).get("error") or json.loads(payload).get("type")
                    except ValueError:
                        err = "not JSON"
                    with self.lock:
                        self.error_events[kind][str(err)] += 1
                elif op == 9:
                    try:
                        s.sendall(ws_frame(payload, 0xA))
                    except OSError:
                        pass
        if code is not None:
            try:
                s.sendall(ws_frame(code.to_bytes(2, "big"), 8))
            except OSError:
                pass
            with self.lock:
                self.close_codes[kind][str(code)] += 1
                self.st[kind]["closed by gateway"] += 1
                self.lifetimes[kind].append(time.monotonic() - opened)
        else:
            with self.lock:
                self.close_codes[kind][ended] += 1
                if ended != "still open at end":
                    self.st[kind]["closed by gateway"] += 1
                    self.lifetimes[kind].append(time.monotonic() - opened)
        self.count(kind, "frames sent", sent)
        s.close()

    def flood_slot(self, kind, delay):
        time.sleep(delay)
        while not self.stop.is_set():
            self.flood(kind)
            self.stop.wait(self.a.recycle)

    def push(self, kind):
        import http.client

        big = b"p" * (8 * self.a.max_message_bytes)
        small = b'{"type":"notice","text":"in limit"}'
        conn = None
        while not self.stop.is_set():
            if kind == "endpoint_small":
                path, body = f"/endpoints/{self.a.endpoint}/messages", small
            elif kind == "endpoint_oversize":
                path, body = f"/endpoints/{self.a.endpoint}/messages", big
            else:
                with self.lock:
                    cid = self.ids[-1] if self.ids else "00000000000000000000"
                path, body = f"/connections/{cid}", big
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.a.admin_port, timeout=5)
                conn.request("POST", path, body, {"Host": "localhost", "Content-Type": "application/json"})
                r = conn.getresponse()
                r.read()
                st = str(r.status)
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                st = "failed: " + type(e).__name__
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                self.push_status[kind][st] += 1
            if kind == "endpoint_small":
                self.stop.wait(1.0)
        if conn is not None:
            conn.close()

    def run(self):
        a = self.a
        mon = threading.Thread(target=self.monitor, daemon=True)
        mon.start()
        threads = []
        for kind in FLOOD_KINDS:
            for i in range(a.floods):
                threads.append(threading.Thread(target=self.flood_slot, args=(kind, i * 0.05), daemon=True))
        for kind in PUSH_KINDS:
            n = 1 if kind == "endpoint_small" else a.pushers
            for _ in range(n):
                threads.append(threading.Thread(target=self.push, args=(kind,), daemon=True))
        for t in threads:
            t.start()
        time.sleep(a.duration)
        fds_end = fd_count(a.gw_pid)
        kinds_end = fd_breakdown(a.gw_pid, a.gw_port, a.origin_port)
        cpu_end = {"gateway": cpu_seconds(a.gw_pid), "attackers": sum(os.times()[:2])}
        metrics_end = admin_metrics(a.admin_port)
        self.stop.set()
        for t in threads:
            t.join(timeout=10)
        mon.join(timeout=2)
        time.sleep(a.settle)  # every attacker closed: does the gateway let go?
        report = {
            "flood_kinds": FLOOD_KINDS,
            "push_kinds": PUSH_KINDS,
            "floods": a.floods,
            "pushers": a.pushers,
            "max_message_bytes": a.max_message_bytes,
            "stats": {k: dict(v) for k, v in self.st.items()},
            "close_codes": {k: dict(v) for k, v in self.close_codes.items()},
            "error_events": {k: dict(v) for k, v in self.error_events.items()},
            "lifetime_median_s": {k: (statistics.median(v) if v else None) for k, v in self.lifetimes.items()},
            "push_status": {k: dict(v) for k, v in self.push_status.items()},
            "fds_peak": self.fd_peak,
            "fds_end": fds_end,
            "fd_kinds_end": kinds_end,
            "fds_settled": fd_count(a.gw_pid),
            "fd_kinds_settled": fd_breakdown(a.gw_pid, a.gw_port, a.origin_port),
            "settle_s": a.settle,
            "cpu_end": cpu_end,
            "timeline": self.timeline,
            "metrics_end": metrics_end,
        }
        with open(a.out, "w") as f:
            json.dump(report, f, indent=1)


def cmd_wsattack(a):
    WsAttack(a).run()


def cmd_wsreport(a):
    solo = json.load(open(a.solo))
    soak = json.load(open(a.soak))
    att = json.load(open(a.attack))
    origin = json.load(open(a.origin)) if a.origin and os.path.exists(a.origin) else {}
    metrics = admin_metrics(a.admin_port)
    fds0 = json.load(open(a.fds_start))
    solo_start = json.load(open(a.solo_start))
    solo_end = json.load(open(a.solo_end))

    def errs(s):
        return s["errors"] + s["connections_failed"]

    def lat(s, k):
        return (s.get("latency") or {}).get(k, 0)

    def ms(us):
        return f"{us / 1000:.2f} ms"

    p99_solo, p99_soak = lat(solo, "p99_us"), lat(soak, "p99_us")
    ratio = p99_soak / max(p99_solo, 1)
    out = []
    w = out.append
    w("")
    w(f"== wasp soak (MODE=ws): {a.binary}")
    w(f"   {a.note}")
    w("")
    w(f"{'normal WS round trips':<22}{'solo':>14}{'soak':>14}")
    w(f"{'  duration':<22}{solo['duration_s']:>13.0f}s{soak['duration_s']:>13.0f}s")
    w(f"{'  connections':<22}{solo['connections_opened']:>14}{soak['connections_opened']:>14}")
    w(f"{'  round trips':<22}{solo['received']:>14}{soak['received']:>14}")
    w(f"{'  per s':<22}{solo['per_s']:>14.0f}{soak['per_s']:>14.0f}")
    for q, k in (("p50", "p50_us"), ("p90", "p90_us"), ("p99", "p99_us"), ("p99.9", "p999_us"), ("max", "max_us")):
        w(f"{'  ' + q:<22}{ms(lat(solo, k)):>14}{ms(lat(soak, k)):>14}")
    w(f"{'  errors + failed':<22}{errs(solo):>14}{errs(soak):>14}")
    w(f"{'  p99 soak / solo':<22}{'':>14}{ratio:>14.2f}")
    w("")
    w(f"event floods ({att['floods']} connections of each kind at a time, reopened when closed; max_message_bytes {att['max_message_bytes']})")
    w(f"  {'kind':<16}{'opened':>7}{'closed':>7}{'median life':>12}{'frames sent':>12}  close codes / error events")
    for k in att["flood_kinds"]:
        s = att["stats"][k]
        med = att["lifetime_median_s"][k]
        codes = ", ".join(f"{n}x {c}" for c, n in sorted(att["close_codes"][k].items()))
        evs = ", ".join(f"{n} {e}" for e, n in sorted(att["error_events"][k].items()))
        other = ", ".join(f"{n} {h}" for h, n in sorted(s.items()) if h not in ("opened", "closed by gateway", "frames sent"))
        w(f"  {k:<16}{s.get('opened', 0):>7}{s.get('closed by gateway', 0):>7}"
          f"{(f'{med * 1000:.0f} ms' if med is not None else '-'):>12}{s.get('frames sent', 0):>12}  "
          f"codes: {codes or '-'}; events: {evs or '-'}{'; ' + other if other else ''}")
    for k, d in att["flood_kinds"].items():
        w(f"    {k}: {d}")
    w("")
    w(f"pushes ({att['pushers']} loop(s) of each oversized kind, as fast as answered)")
    for k in att["push_kinds"]:
        st = att["push_status"][k]
        w(f"  {k:<20}{sum(st.values()):>8} sent  " + ", ".join(f"{n}x {c}" for c, n in sorted(st.items())))
    for k, d in att["push_kinds"].items():
        w(f"    {k}: {d}")
    if origin:
        w(f"  slow backend ($default/$error, {a.slow_s} s): {origin.get('slow', 0)} calls received")
    w("")
    c0, c1, c2 = solo_start["cpu_s"], solo_end["cpu_s"], att["cpu_end"]["gateway"]
    if None not in (c0, c1, c2):
        w(f"CPU: gateway {c1 - c0:.1f} s in solo ({(c1 - c0) / max(solo['received'], 1) * 1e6:.1f} us per round trip), "
          f"{c2 - c1:.1f} s in soak (attackers included); attackers {att['cpu_end']['attackers']:.1f} s")
        w("")
    w("gateway file descriptors (ls /proc/PID/fd | wc -l)")
    w(f"  start {fds0['count']}, peak {att['fds_peak']}, end of soak with attackers attached {att['fds_end']}, "
      f"{att['settle_s']:.0f} s after every attacker closed {att['fds_settled']}")
    for when, kinds in (("start", fds0["kinds"]), ("end of soak", att["fd_kinds_end"]), ("after settle", att["fd_kinds_settled"])):
        w(f"  {when}: " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    w("  (upstream = to the slow backend; tcp = the pool to the normal origin)")
    w("  timeline (t: fds): " + " ".join(f"{t}s:{n}" for t, n in att["timeline"]))
    w("")
    w("gateway metrics (wasp_ws_* at the end of the soak; zero values left out)")
    for l in att["metrics_end"].splitlines():
        if l.startswith(("wasp_ws", "wasp_open_connections", "wasp_upstream_errors_total")) and not l.endswith(" 0"):
            w("  " + l)
    w("")
    errors = errs(solo) + errs(soak)
    ok = ratio <= 1.5 and errors == 0 and p99_solo > 0
    w("rule: PASS when p99(soak)/p99(solo) <= 1.5 and normal traffic has 0 errors (solo and soak)")
    w(f"{'PASS' if ok else 'FAIL'}: p99 ratio {ratio:.2f}, errors {errors}")
    print("\n".join(out))
    sys.exit(0 if ok else 1)


# ---------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("ports")
    s.add_argument("n", type=int)
    s.set_defaults(fn=cmd_ports)
    s = sub.add_parser("origin")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--status")
    s.add_argument("--slow", type=float, default=3.0, help="seconds before answering a path ending in /slow")
    s.set_defaults(fn=cmd_origin)
    s = sub.add_parser("wait")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--timeout", type=float, default=20)
    s.set_defaults(fn=cmd_wait)
    s = sub.add_parser("fds")
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--gw-port", type=int, required=True)
    s.add_argument("--origin-port", type=int, required=True)
    s.set_defaults(fn=cmd_fds)
    s = sub.add_parser("attack")
    s.add_argument("--gw-port", type=int, required=True)
    s.add_argument("--gw-pid", type=int, required=True)
    s.add_argument("--admin-port", type=int, required=True)
    s.add_argument("--origin-port", type=int, required=True)
    s.add_argument("--origin-pid", type=int, required=True)
    s.add_argument("--prefix", default="/origin")
    s.add_argument("--per-kind", type=int, default=24)
    s.add_argument("--kinds", default="", help="comma-separated attacker kinds to run (default: all)")
    s.add_argument("--send-unit", type=int, default=1 << 16,
                   help="bytes per send() of an upload (0: the whole megabyte in one sendall)")
    s.add_argument("--duration", type=float, required=True)
    s.add_argument("--recycle", type=float, default=1.0, help="pause before reopening a cut connection")
    s.add_argument("--settle", type=float, default=12)
    s.add_argument("--stuck", type=float, default=30, help="a connection held longer than this is reported as never cut")
    s.add_argument("--sample", type=float, default=10, help="timeline sampling period")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_attack)
    s = sub.add_parser("report")
    for k in ("binary", "note", "attack", "origin", "fds_start"):
        s.add_argument("--" + k.replace("_", "-"))
    s.add_argument("--dir", required=True, help="soak.sh's work dir: {solo,soak}-N.json and -N-{start,end}.json")
    s.add_argument("--rounds", type=int, required=True)
    s.add_argument("--admin-port", type=int, required=True)
    s.set_defaults(fn=cmd_report)
    s = sub.add_parser("wsattack")
    s.add_argument("--gw-port", type=int, required=True)
    s.add_argument("--gw-pid", type=int, required=True)
    s.add_argument("--admin-port", type=int, required=True)
    s.add_argument("--origin-port", type=int, required=True)
    s.add_argument("--path", default="/ws/flood", help="the attackers' endpoint path")
    s.add_argument("--endpoint", default="flood", help="the attackers' endpoint name (push API)")
    s.add_argument("--max-message-bytes", type=int, default=1024)
    s.add_argument("--floods", type=int, default=4, help="flood connections of each kind at a time")
    s.add_argument("--pushers", type=int, default=2, help="loops of each oversized push kind")
    s.add_argument("--duration", type=float, required=True)
    s.add_argument("--recycle", type=float, default=0.1, help="pause before reopening a closed flood connection")
    s.add_argument("--settle", type=float, default=5)
    s.add_argument("--sample", type=float, default=10, help="timeline sampling period")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_wsattack)
    s = sub.add_parser("wsreport")
    for k in ("binary", "note", "solo", "soak", "attack", "origin", "fds_start", "solo_start", "solo_end"):
        s.add_argument("--" + k.replace("_", "-"))
    s.add_argument("--admin-port", type=int, required=True)
    s.add_argument("--slow-s", type=float, default=3.0)
    s.set_defaults(fn=cmd_wsreport)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
