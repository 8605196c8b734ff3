"""Our load engine beside Locust and wrk against the same loopback target, in one run.

    .venv/bin/python benchmarks/loadtest_peers.py [--connections 32] [--duration 10] [--rounds 2]

Needs nginx and wrk (`apt-get install -y nginx-light wrk`) and Locust in the venv, for this
benchmark only (`.venv/bin/pip install locust`); a missing peer is reported and skipped, a missing
nginx ends the run. Everything listens on 127.0.0.1 and is stopped at the end.

1. Throughput, closed model: nginx with one worker serving a small JSON file; each tool runs the
   same connections for the same seconds, `rounds` times in rotating order (medians reported).
   Besides requests/s, each tool's CPU use in the middle of its run is read from /proc, so
   "requests per CPU-second" compares the tools per core even when they got unequal CPU shares.
2. Open model, fixed rate: a server whose delays follow a known log-normal (median 5 ms), in a
   low-discrepancy order so every stretch of the run sees the same distribution. Our open model
   against wrk held to the same fixed rate by a Lua `delay()` schedule. wrk2 is not packaged in
   Debian. wrk 4 times each request from its actual send, then, before reporting, adds the
   samples a stall hid, estimated from the mean interval per connection (`stats_correct`,
   HdrHistogram's expected-interval correction); wrk2 times from the due time instead. Below
   saturation neither correction changes anything, so this compares the measurement itself.
   The server's designed percentiles are shown as the truth.
3. Coordinated omission: the same server pausing 300 ms every 2 s (a GC pause), 8 connections,
   200 req/s: our open model's tail from the due time, from the actual send (what a tool without
   correction reports), and wrk's after-the-fact correction.

JSON on stdout, progress on stderr, a one-line summary last on stdout. The machine is shared and
small (2 cores: nginx on one, the load tool on the other), so figures are noisy: compare ratios
within one run, not across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
HEALTH = b'{"status":"ok","deployment":"dpl_bench","region":"iad1"}\n'

NGINX_CONF = """worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
  uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
  keepalive_requests 10000000;
  server {{
    listen 127.0.0.1:{port};
    root {d}/www;
    location / {{ default_type application/json; }}
  }}
}}
"""

LOCUSTFILE = """from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

class Health(FastHttpUser):
    wait_time = constant(0)

    @task
    def health(self):
        self.client.get("/api/health")
"""

# wrk Lua: a fixed-rate schedule shared by the thread's connections (what wrk2 adds to wrk),
# with the run's figures as one JSON line. LuaJIT's FFI gives the monotonic clock wrk's Lua lacks.
WRK_LUA = """local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } atge_ts;
int clock_gettime(int clk_id, atge_ts *tp);
]]
local ts = ffi.new("atge_ts")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = %(interval_ms)s
local n, t0 = 0, nil
if interval > 0 then
  function delay()
    local now = now_ms()
    if not t0 then t0 = now end
    n = n + 1
    local d = t0 + n * interval - now
    if d < 0 then return 0 end
    return d
  end
end
done = function(s, lat, req)
  local e = s.errors
  io.write(string.format('{"requests":%%d,"duration_us":%%d,"errors":%%d,"mean_us":%%.1f,' ..
    '"p50_us":%%d,"p95_us":%%d,"p99_us":%%d,"max_us":%%d}\\n', s.requests, s.duration,
    e.connect + e.read + e.write + e.status + e.timeout, lat.mean, lat:percentile(50),
    lat:percentile(95), lat:percentile(99), lat.max))
end
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# -- CPU of a child process, from /proc --------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime, all threads


def run_measured(cmd: list[str], duration_s: float, timeout_s: float, **kw) -> dict:
    """Run a tool; sample its CPU every 0.1 s and keep the CPU share of its run's middle.

    The window is [end - 0.8 D, end - 0.2 D]: past every tool's start-up (imports, spawning)
    and before its teardown, so per-core figures compare load generation, not interpreters starting.
    """
    samples: list[tuple[float, float]] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

    def sample():
        while proc.poll() is None:
            c = _cpu_s(proc.pid)
            if c is not None:
                samples.append((time.monotonic(), c))
            time.sleep(0.1)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    t.join(2)
    share = None
    if len(samples) > 10:
        end = samples[-1][0]
        a = min(samples, key=lambda s: abs(s[0] - (end - 0.8 * duration_s)))
        b = min(samples, key=lambda s: abs(s[0] - (end - 0.2 * duration_s)))
        if b[0] - a[0] > 0.5:
            share = (b[1] - a[1]) / (b[0] - a[0])
    return {"rc": proc.returncode, "stdout": out, "stderr": err, "cpu_share": share}


def _figures(rps, p50, p95, p99, mx, errors, requests, cpu_share) -> dict:
    r = lambda v, n=3: None if v is None else round(v, n)  # noqa: E731
    return {"rps": r(rps, 1), "requests": requests, "errors": errors, "p50_ms": r(p50),
            "p95_ms": r(p95), "p99_ms": r(p99), "max_ms": r(mx), "cpu_share": r(cpu_share, 2),
            "req_per_cpu_s": r(rps / cpu_share, 0) if rps and cpu_share else None}


# -- the tools ---------------------------------------------------------------------------------
def run_ours(url: str, conns: int, dur: float, rate: float | None = None) -> dict:
    cmd = [PY, "-m", "atge_assets.load.cli", "--url", url, "--users", str(conns),
           "--duration", str(dur), "--json", "--abort-error-rate", "1"]
    if rate:
        cmd += ["--rate", str(rate)]
    m = run_measured(cmd, dur, dur + 60, cwd=ROOT)
    if m["rc"] not in (0, 1):
        raise RuntimeError(f"ours failed: {m['stderr'][-500:]}")
    d = json.loads(m["stdout"].strip().splitlines()[-1])
    out = _figures(d["rps"], d["p50_ms"], d["p95_ms"], d["p99_ms"], d["max_ms"], d["errors"],
                   d["requests"], m["cpu_share"])
    if rate:  # the open model's service time, from the actual send: what wrk measures
        out.update({k: d[k] for k in ("service_p50_ms", "service_p95_ms", "service_p99_ms")})
    return out


def run_locust(locust: str, url: str, conns: int, dur: float, tmp: Path) -> dict:
    base = url.split("/api/health")[0]  # the locustfile asks for /api/health itself
    prefix = tmp / f"locust_{time.monotonic_ns()}"
    cmd = [locust, "-f", str(tmp / "locustfile.py"), "--headless", "-u", str(conns), "-r",
           str(conns), "-t", f"{dur:g}s", "--host", base, "--only-summary", "--csv", str(prefix),
           "--loglevel", "WARNING", "--exit-code-on-error", "0"]
    m = run_measured(cmd, dur, dur + 60)
    rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))
    agg = next(r for r in rows if r["Name"] == "Aggregated")
    f = lambda k: float(agg[k]) if agg.get(k) not in (None, "", "N/A") else None  # noqa: E731
    return _figures(f("Requests/s"), f("50%"), f("95%"), f("99%"), f("100%"),
                    int(agg["Failure Count"]), int(agg["Request Count"]), m["cpu_share"])


def run_wrk(url: str, conns: int, dur: float, tmp: Path, rate: float | None = None) -> dict:
    script = tmp / f"wrk_{time.monotonic_ns()}.lua"
    script.write_text(WRK_LUA % {"interval_ms": repr(1000.0 / rate) if rate else "0"})
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{dur:g}s", "-s", str(script), url]
    m = run_measured(cmd, dur, dur + 60)
    line = next(ln for ln in reversed(m["stdout"].splitlines()) if ln.startswith("{"))
    d = json.loads(line)
    ms = lambda k: d[k] / 1000.0  # noqa: E731
    return _figures(d["requests"] / (d["duration_us"] / 1e6), ms("p50_us"), ms("p95_us"),
                    ms("p99_us"), ms("max_us"), d["errors"], d["requests"], m["cpu_share"])


# -- a server with known latencies, for the open-model checks -----------------------------------
def serve_delays(port: int, median_ms: float, sigma: float, stall_every_s: float,
                 stall_ms: float) -> None:
    """Answer each GET after the next delay of a log-normal, visited in golden-ratio order.

    A thread per connection sleeping in time.sleep: event-loop timers round to whole
    milliseconds, which would blur a 5 ms reference. With `stall_every_s`, also hold every
    answer due inside a `stall_ms` pause until the pause ends.
    """
    normal = statistics.NormalDist()
    step = (math.sqrt(5) - 1) / 2
    body = b'{"status":"ok"}'
    answer = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
              b"content-length: %d\r\n\r\n%s" % (len(body), body))
    lock, count, t0 = threading.Lock(), [0], time.monotonic()

    def next_delay_s() -> float:
        with lock:
            count[0] += 1
            u = (count[0] * step) % 1.0
        delay = median_ms * math.exp(sigma * normal.inv_cdf(min(max(u, 1e-6), 1 - 1e-6)))
        if stall_every_s:
            into = (time.monotonic() - t0) % stall_every_s * 1000
            if into < stall_ms:
                delay += stall_ms - into
        return delay / 1000

    def handle(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        with conn, contextlib.suppress(OSError):  # wrk resets its connections when it is done
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                _, buf = buf.split(b"\r\n\r\n", 1)  # GETs only: no bodies to skip
                time.sleep(next_delay_s())
                conn.sendall(answer)

    with socket.create_server(("127.0.0.1", port), backlog=1024) as srv:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()


def start_delay_server(median_ms: float, sigma: float, stall_every_s=0.0, stall_ms=0.0):
    port = free_port()
    proc = subprocess.Popen([PY, __file__, "--serve-delays", str(port), str(median_ms), str(sigma),
                             str(stall_every_s), str(stall_ms)])
    wait_port(port, proc)
    return proc, f"http://127.0.0.1:{port}/"


def start_nginx(tmp: Path) -> tuple[subprocess.Popen, str, str]:
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if not nginx:
        raise SystemExit("nginx is not installed (apt-get install -y nginx-light); no target to "
                         "compare on, so no figures")
    (tmp / "www" / "api").mkdir(parents=True)
    (tmp / "tmp").mkdir()
    (tmp / "www" / "api" / "health").write_bytes(HEALTH)
    for p in (tmp, tmp / "www", tmp / "www" / "api"):
        p.chmod(0o755)  # nginx's worker runs as nobody when started by root
    (tmp / "www" / "api" / "health").chmod(0o644)
    port = free_port()
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(d=tmp, port=port))
    proc = subprocess.Popen([nginx, "-c", str(tmp / "nginx.conf"), "-p", str(tmp), "-e", "stderr"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_port(port, proc)
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
    return proc, f"http://127.0.0.1:{port}/api/health", version


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def med(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


# -- the run -----------------------------------------------------------------------------------
def throughput(url: str, tools: dict, conns: int, dur: float, rounds: int) -> dict:
    per_round = []
    names = list(tools)
    for i in range(rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        row = {}
        for name in order:
            row[name] = tools[name](url, conns, dur)
            log(f"  round {i + 1} {name:7s} {row[name]}")
        per_round.append(row)
    keys = ("rps", "req_per_cpu_s", "cpu_share", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors")
    medians = {n: {k: med([r[n][k] for r in per_round]) for k in keys} for n in names}
    ours = medians.get("ours", {})
    ratios = {}
    for peer in names:
        if peer != "ours":
            ratios[f"ours/{peer}"] = {
                "rps": ratio(ours.get("rps"), medians[peer]["rps"]),
                "req_per_cpu_s": ratio(ours.get("req_per_cpu_s"), medians[peer]["req_per_cpu_s"]),
                "p99_ms": ratio(ours.get("p99_ms"), medians[peer]["p99_ms"]),
            }
    return {"connections": conns, "duration_s": dur, "rounds": per_round, "median": medians,
            "ratios": ratios}


def open_check(tmp: Path, rate: float, conns: int, dur: float, rounds: int, stall: bool,
               have_wrk: bool) -> dict:
    median_ms, sigma = 5.0, 0.5
    proc, url = (start_delay_server(median_ms, sigma, 2.0, 300.0) if stall
                 else start_delay_server(median_ms, sigma))
    runs = {"ours_open": [], "wrk_fixed_rate": []}
    try:
        for i in range(rounds):
            order = ["ours_open", "wrk_fixed_rate"][:: 1 if i % 2 == 0 else -1]
            for name in order:
                if name == "ours_open":
                    runs[name].append(run_ours(url, conns, dur, rate=rate))
                elif have_wrk:
                    runs[name].append(run_wrk(url, conns, dur, tmp, rate=rate))
                if runs[name]:
                    log(f"  round {i + 1} {name:14s} {runs[name][-1]}")
    finally:
        stop(proc)
    keys = ("rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "service_p50_ms", "service_p95_ms",
            "service_p99_ms", "cpu_share", "errors")
    medians = {n: {k: med([r.get(k) for r in rs]) for k in keys if any(k in r for r in rs)}
               for n, rs in runs.items() if rs}
    out = {"rate": rate, "connections": conns, "duration_s": dur, "rounds": runs,
           "median": medians}
    z = statistics.NormalDist().inv_cdf
    if stall:
        out["server"] = "log-normal delays, median 5 ms, plus a 300 ms pause every 2 s (15%)"
    else:
        out["server"] = {"median_ms": median_ms, "sigma": sigma,
                         "designed_p50_ms": median_ms,
                         "designed_p95_ms": round(median_ms * math.exp(sigma * z(0.95)), 3),
                         "designed_p99_ms": round(median_ms * math.exp(sigma * z(0.99)), 3)}
    if "wrk_fixed_rate" in medians:
        ours, wrk = medians["ours_open"], medians["wrk_fixed_rate"]
        # Ours from the due time (what an arrival sees) and from the actual send, each over wrk's.
        out["ours_from_due/wrk"] = {f"p{p}": ratio(ours[f"p{p}_ms"], wrk[f"p{p}_ms"])
                                    for p in (50, 95, 99)}
        out["ours_from_send/wrk"] = {f"p{p}": ratio(ours[f"service_p{p}_ms"], wrk[f"p{p}_ms"])
                                     for p in (50, 95, 99)}
    return out


def goals(result: dict) -> dict:
    """The issue's goals: Locust's throughput per core at least; open-model tails within 10%."""
    out = {}
    r = result["throughput"]["ratios"].get("ours/locust")
    if r:
        out["at_least_locust_per_core"] = r["req_per_cpu_s"] is not None and r["req_per_cpu_s"] >= 1
    due = result["open_model"].get("ours_from_due/wrk")
    if due:
        out["open_tails_within_10pct_of_wrk"] = all(
            v is not None and abs(v - 1) <= 0.10 for k, v in due.items() if k in ("p95", "p99"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rate", type=float, default=500.0, help="the open-model check's req/s")
    ap.add_argument("--serve-delays", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_delays:
        port, median_ms, sigma, every, pause = args.serve_delays
        serve_delays(int(port), float(median_ms), float(sigma), float(every), float(pause))
        return 0
    if not (1 <= args.connections <= 1000 and 1 <= args.duration <= 60 and 1 <= args.rounds <= 5
            and 1 <= args.rate <= 20000):
        ap.error("connections in [1, 1000], duration in [1, 60] s, rounds in [1, 5], rate in "
                 "[1, 20000]")

    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="atge-loadpeers-"))
    locust = shutil.which("locust", path=str(Path(PY).parent)) or shutil.which("locust")
    have_wrk = shutil.which("wrk") is not None
    missing = ([] if locust else ["locust (pip install locust)"]) + (
        [] if have_wrk else ["wrk (apt-get install -y wrk)"])
    for m in missing:
        log(f"skipping {m}: not installed")
    (tmp / "locustfile.py").write_text(LOCUSTFILE)
    tools = {"ours": run_ours}
    if locust:
        tools["locust"] = lambda u, c, d: run_locust(locust, u, c, d, tmp)
    if have_wrk:
        tools["wrk"] = lambda u, c, d: run_wrk(u, c, d, tmp)

    nginx = None
    result: dict = {"machine": {"cores": os.cpu_count(), "loadavg_before": os.getloadavg()},
                    "missing": missing}
    try:
        nginx, url, version = start_nginx(tmp)
        result["target"] = {"server": f"{version}, 1 worker", "url": url, "body_bytes": len(HEALTH)}
        log(f"throughput: {args.connections} connections, {args.duration:g} s, "
            f"{args.rounds} rounds against {version} at {url}")
        result["throughput"] = throughput(url, tools, args.connections, args.duration, args.rounds)
    finally:
        stop(nginx)
    log(f"open model at {args.rate:g} req/s against a server with known delays")
    result["open_model"] = open_check(tmp, args.rate, args.connections, args.duration,
                                      args.rounds, False, have_wrk)
    log("coordinated omission: a 300 ms pause every 2 s, 200 req/s, 8 connections")
    result["stall"] = open_check(tmp, 200.0, 8, min(args.duration, 6.0), 1, True, have_wrk)
    result["machine"]["loadavg_after"] = os.getloadavg()
    result["goals"] = goals(result)
    result["notes"] = [
        "Locust reports whole milliseconds (two significant figures above 100 ms), so its "
        "sub-10 ms percentiles are coarse",
        "the machine is shared: compare ratios within this run, not figures across runs",
    ]
    result["seconds"] = round(time.monotonic() - t_start, 1)
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=1))

    tp, om, st = result["throughput"], result["open_model"], result["stall"]
    parts = [f"ours {tp['median']['ours']['rps']:.0f} req/s "
             f"({tp['median']['ours']['req_per_cpu_s']} per CPU-s)"]
    for peer in ("locust", "wrk"):
        if peer in tp["median"]:
            r = tp["ratios"][f"ours/{peer}"]
            parts.append(f"x{r['rps']} {peer}'s req/s, x{r['req_per_cpu_s']} per CPU-s")
    if "ours_from_due/wrk" in om:
        due, sent = om["ours_from_due/wrk"], om["ours_from_send/wrk"]
        parts.append(f"open model at {args.rate:g}/s over wrk's fixed rate: p50 x{due['p50']}, "
                     f"p99 x{due['p99']} from due (x{sent['p50']}, x{sent['p99']} from send)")
    so = st["median"]["ours_open"]
    parts.append(f"300 ms pauses: our p95 {so['p95_ms']} ms from due, {so['service_p95_ms']} ms "
                 "from send" + (f", wrk's corrected {st['median']['wrk_fixed_rate']['p95_ms']} ms"
                                if "wrk_fixed_rate" in st["median"] else ""))
    print("; ".join(parts) + f"; load avg {result['machine']['loadavg_before'][0]:.1f} "
          f"(shared 2-core machine: noisy); {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
