"""`atge`: start the whole system, drive the sandbox, judge and find change points from scripts.

Dagster is imported only by the commands that need it, so `atge judge` starts in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SANDBOX_PORT = 8787
SANDBOX_PROJECT = "prj_atge_sandbox"


def _sandbox_url(args) -> str:
    return (getattr(args, "url", None) or os.environ.get("ATGE_SANDBOX_URL")
            or f"http://127.0.0.1:{DEFAULT_SANDBOX_PORT}").rstrip("/")


def _die(msg: str, code: int = 2) -> int:
    print(f"atge: {msg}", file=sys.stderr)
    return code


# -- sandbox -----------------------------------------------------------------------------------
def cmd_sandbox_serve(args) -> int:
    import logging

    from atge_assets.sandbox.server import serve
    from atge_assets.settings import atge_home

    logging.basicConfig(level=logging.INFO, format="%(asctime)s sandbox %(message)s")
    state = Path(args.state) if args.state else atge_home() / "sandbox" / "state.json"
    token = os.environ.get("ATGE_SANDBOX_TOKEN") or "sandbox-token"
    # With the project's bypass secret set, the sandbox protects its deployments as Vercel does.
    server = serve(args.host, args.port, state, scale=args.scale, token=token, noise=args.noise,
                   protection_bypass=os.environ.get("VERCEL_AUTOMATION_BYPASS_SECRET"))
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    st = server.state.status()
    print(f"sandbox listening on {server.base_url} (state {state}, scale {args.scale}, "
          f"production {st['production']}, deployments "
          f"{'protected' if server.protection_bypass else 'unprotected'})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _sandbox_call(args, method: str, path: str, body: dict | None = None) -> dict:
    import httpx

    try:
        resp = httpx.request(method, _sandbox_url(args) + path, json=body, timeout=10)
    except httpx.HTTPError as exc:
        raise SystemExit(_die(f"cannot reach the sandbox at {_sandbox_url(args)} ({exc}); "
                              "is `atge up` or `atge sandbox serve` running?"))
    if resp.status_code >= 400:
        raise SystemExit(_die(f"sandbox answered {resp.status_code}: {resp.text[:300]}"))
    return resp.json()


def cmd_sandbox_deploy(args) -> int:
    out = _sandbox_call(args, "POST", "/_sandbox/deployments", {
        "target": args.target, "slowdown": args.slowdown, "errors": args.errors,
        "build_s": args.build_seconds, "mode": args.mode,
    })
    print(json.dumps(out) if args.json else f"deployed {out['id']} ({out['target']}) at {out['url']}")
    return 0


def cmd_sandbox_status(args) -> int:
    st = _sandbox_call(args, "GET", "/_sandbox/status")
    if args.json:
        print(json.dumps(st))
    else:
        print(f"production: {st['production']}")
        for d in st["deployments"]:
            mark = "*" if d["id"] == st["production"] else " "
            print(f" {mark} {d['id']}  {d['target']:<10} {d['state']:<8} slowdown {d['slowdown']}"
                  f"  errors {d['errors']}")
        for r in st["rollbacks"]:
            print(f"rollback: {r['from']} -> {r['to']} at {time.ctime(r['at'])}")
    return 0


def cmd_sandbox_metrics(args) -> int:
    if args.reset:
        _sandbox_call(args, "POST", "/_sandbox/metrics/reset", {})
    for spec in args.scenario or []:
        metric, _, kind = spec.partition("=")
        body = {"metric": metric, "kind": kind or "ramp", "target": args.target}
        for key in ("base", "slope_per_min", "noise", "spike_p", "spike_height", "speed"):
            if getattr(args, key) is not None:
                body[key] = getattr(args, key)
        if args.ago_minutes is not None:
            body["ago_s"] = args.ago_minutes * 60
        sc = _sandbox_call(args, "POST", "/_sandbox/metrics/scenario", body)
        if not args.json:
            print(f"{sc['metric']}: {sc['kind']} from {sc['base']:g}, {sc['slope_per_min']:+g}/min"
                  f", spikes {sc['spike_p']:.0%}, since {time.ctime(sc['start'])}")
    snap = _sandbox_call(args, "GET", f"/_sandbox/metrics?target={args.target}")
    acts = _sandbox_call(args, "GET", f"/_sandbox/metrics/actions?target={args.target}")["actions"]
    if args.json:
        print(json.dumps(dict(snap, actions=acts)))
        return 0
    print(f"{snap['target']}: {snap['replicas']} replica(s)")
    for m, v in snap["metrics"].items():
        print(f"  {m:<18} {v:>10.2f}  {snap['scenarios'].get(m, {}).get('kind', 'flat')}")
    for a in acts[-10:]:
        extra = f" -> {a['replicas']} replicas" if "replicas" in a else ""
        print(f"action: {a['action']} for {a['metric'] or '-'} at {time.ctime(a['at'])}{extra}"
              + (f"  ({a['reason']})" if a["reason"] else ""))
    return 0


# -- batch tools -------------------------------------------------------------------------------
def _batch(path: str, run) -> int:
    from atge_assets.lib.jsonl import read_lines

    try:
        # Bytes, decoded line by line: a stray non-UTF-8 byte spoils its own line, not the batch.
        src = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as exc:
        return _die(f"cannot read {path}: {exc}")
    with src:
        errors = run(read_lines(src), sys.stdout)
    if errors:
        print(f"atge: {errors} malformed input line(s); see their 'error' fields", file=sys.stderr)
        return 1
    return 0


def cmd_judge(args) -> int:
    from atge_assets.deployments.judge import run_batch

    return _batch(args.batch, run_batch)


def cmd_changepoints(args) -> int:
    from atge_assets.trends.changepoints import run_batch

    return _batch(args.batch, run_batch)


def cmd_forecast(args) -> int:
    from atge_assets.monitoring.cli import run_batch

    if not (0 < args.horizon_minutes <= 7 * 24 * 60):
        return _die("--horizon-minutes must be between 0 and 10080")
    return _batch(args.batch, lambda src, out: run_batch(src, out, args.horizon_minutes))


# -- up ----------------------------------------------------------------------------------------
def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen) -> bool:
    import httpx

    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def _project_root() -> Path:
    here = Path(__file__).resolve().parents[1]
    return here if (here / "workspace.yaml").exists() else Path.cwd()


def _stop(proc: subprocess.Popen, name: str, grace_s: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    try:
        # dagster dev shuts its webserver, daemon and code server down cleanly on SIGINT.
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(grace_s)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    print(f"atge: {name} stopped", file=sys.stderr, flush=True)


SANDBOX_STAGES = (5, 25, 100)


def _sandbox_rolling(sandbox_url: str, env: dict, on: bool) -> bool:
    """Rolling releases in the sandbox on (the stages above, manual approval, the canary marked)
    or off, as `atge up` was asked; on, the rollouts sample its production domain for the split.
    The sandbox keeps the setting in its state: this makes every start say it afresh."""
    import httpx

    from atge_assets.sandbox.server import CANARY_HEADER

    body = {"stages": [{"targetPercentage": p} for p in SANDBOX_STAGES] if on else None,
            "advancementType": "manual-approval", "canaryResponseHeader": True}
    try:
        httpx.post(sandbox_url + "/_sandbox/rolling-release", json=body,
                   timeout=10).raise_for_status()
    except httpx.HTTPError:
        return False
    if on:
        env.setdefault("ATGE_ROLLOUT_PRODUCTION_URL", sandbox_url + "/p")
        env.setdefault("ATGE_ROLLOUT_CANARY_HEADER", CANARY_HEADER)
        print(f"atge: sandbox rolling releases on: stages {', '.join(map(str, SANDBOX_STAGES))}% "
              "by manual approval", file=sys.stderr, flush=True)
    return True


def cmd_up(args) -> int:
    from atge_assets.harness.instance import instance_yaml
    from atge_assets.settings import atge_home

    root = _project_root()
    home = atge_home()
    own_home = not os.environ.get("DAGSTER_HOME")
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster").resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    # Our own home follows the project's dagster.yaml; a DAGSTER_HOME you chose keeps your file.
    if own_home or not target.exists() or args.reset_instance_config:
        target.write_text(instance_yaml((root / "dagster.yaml").read_text(), os.environ))
    storage = "Postgres" if os.environ.get("ATGE_DATABASE_URL") else "SQLite"
    env = dict(os.environ, DAGSTER_HOME=str(dagster_home), ATGE_HOME=str(home))
    # Links in messages point at the UI this command starts, unless told otherwise.
    env.setdefault("ATGE_DAGSTER_URL", f"http://{args.host}:{args.port}")
    bindir = Path(sys.executable).parent
    procs: list[tuple[str, subprocess.Popen]] = []

    stopping = False

    def on_signal(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not args.no_sandbox:
            sandbox_url = f"http://127.0.0.1:{args.sandbox_port}"
            # Deployments are protected, as on Vercel by default: every request the system makes
            # to one must carry the bypass secret (a fresh one per start unless you set it).
            env.setdefault("VERCEL_AUTOMATION_BYPASS_SECRET", secrets.token_urlsafe(24))
            sb = subprocess.Popen(
                [sys.executable, "-m", "atge_assets.cli", "sandbox", "serve", "--port",
                 str(args.sandbox_port), "--scale", str(args.scale)],
                env=env, start_new_session=True,
            )
            procs.append(("sandbox", sb))
            if not _wait_http(sandbox_url + "/_sandbox/status", 30, sb):
                return _die(f"the sandbox did not start on {sandbox_url}", 1)
            env.update(
                VERCEL_API_URL=sandbox_url, VERCEL_PROJECT_ID=SANDBOX_PROJECT,
                VERCEL_TOKEN=env.get("ATGE_SANDBOX_TOKEN") or "sandbox-token",
                ATGE_LATENCY_SCALE=str(args.scale), ATGE_SANDBOX_URL=sandbox_url,
            )
            # A local API has no rate limit worth sparing: poll it often.
            env.setdefault("ATGE_SENSOR_INTERVAL_S", "2")
            # The Python sandbox serves ~800 requests/s on 2 cores: 500 and 1000 users would
            # measure its queue, not the app, and fail a healthy deployment's checks.
            env.setdefault("ATGE_LOAD_STAGES", "25,50,100")
            if not _sandbox_rolling(sandbox_url, env, args.rolling_release):
                return _die("could not set the sandbox's rolling releases", 1)
        elif args.rolling_release:
            return _die("--rolling-release configures the sandbox; on Vercel, turn Rolling "
                        "Releases on in the project's settings (see the README)")
        elif not env.get("VERCEL_TOKEN") or not env.get("VERCEL_PROJECT_ID"):
            return _die("--no-sandbox needs VERCEL_TOKEN and VERCEL_PROJECT_ID in the environment")
        if env.get("ATGE_VERCEL_WEBHOOK_SECRET"):
            from atge_assets.settings import Settings

            # Optional: Vercel's deployment webhooks make the sensor act on its next tick. The
            # queue's URL may hold a password: it goes by the environment, not the command line.
            intake = subprocess.Popen(
                [sys.executable, "-m", "atge_assets.cli", "webhook-intake", "--host", args.host,
                 "--port", str(args.webhook_port)],
                env=dict(env, ATGE_HISTORY_URL=Settings.from_env(env).shared.history_url),
                start_new_session=True)
            procs.append(("webhook intake", intake))
        dev = subprocess.Popen(
            [str(bindir / "dagster"), "dev", "-w", str(root / "workspace.yaml"),
             "-h", args.host, "-p", str(args.port)],
            env=env, cwd=root, start_new_session=True,
        )
        procs.append(("dagster", dev))
        print(f"atge: Dagster UI on http://{args.host}:{args.port}  (DAGSTER_HOME={dagster_home}, "
              f"{storage} storage)", file=sys.stderr, flush=True)
        while not stopping:
            for name, p in procs:
                if p.poll() is not None:
                    print(f"atge: {name} exited with {p.returncode}; stopping", file=sys.stderr)
                    stopping = True
            time.sleep(0.5)
    finally:
        for name, p in reversed(procs):
            _stop(p, name)
    return 0


# -- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="atge", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start the sandbox, the Dagster webserver and the daemon")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=3000)
    up.add_argument("--sandbox-port", type=int, default=DEFAULT_SANDBOX_PORT)
    up.add_argument("--scale", type=float, default=0.005,
                    help="sandbox latency as a fraction of the plan's (0.005: 30 s -> 150 ms)")
    up.add_argument("--webhook-port", type=int, default=8788,
                    help="port of the Vercel webhook intake (started when "
                    "ATGE_VERCEL_WEBHOOK_SECRET is set)")
    up.add_argument("--no-sandbox", action="store_true",
                    help="watch the real Vercel project in VERCEL_PROJECT_ID instead")
    up.add_argument("--rolling-release", action="store_true",
                    help="the sandbox rolls production deployments out in stages (5%%, 25%%, "
                    "100%%, manual approval, canary header on), each judged by the rollouts; "
                    "without it the sandbox's rolling releases are off")
    up.add_argument("--reset-instance-config", action="store_true",
                    help="rewrite $DAGSTER_HOME/dagster.yaml from the project's even if you set "
                    "DAGSTER_HOME and it has one")
    up.set_defaults(func=cmd_up)

    sb = sub.add_parser("sandbox", help="the simulated ATGE and Vercel API").add_subparsers(
        dest="sandbox_command", required=True)
    serve = sb.add_parser("serve", help="run the sandbox server in the foreground")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_SANDBOX_PORT)
    serve.add_argument("--state", help="state file (default $ATGE_HOME/sandbox/state.json)")
    serve.add_argument("--scale", type=float, default=0.005)
    serve.add_argument("--noise", type=float, default=0.10,
                       help="log-normal sigma of each phase's latency")
    serve.set_defaults(func=cmd_sandbox_serve)
    dep = sb.add_parser("deploy", help="create a deployment")
    dep.add_argument("--slowdown", type=float, default=1.0)
    dep.add_argument("--target", choices=["production", "preview"], default="production")
    dep.add_argument("--errors", type=float, default=0.0, help="share of requests answered 500")
    dep.add_argument("--build-seconds", type=float, default=0.0)
    dep.add_argument("--mode", choices=["ok", "hang", "refuse"], default="ok",
                     help="hang: never answers in time; refuse: its URL refuses connections")
    dep.add_argument("--url", help="sandbox URL (default $ATGE_SANDBOX_URL or :8787)")
    dep.add_argument("--json", action="store_true")
    dep.set_defaults(func=cmd_sandbox_deploy)
    st = sb.add_parser("status", help="production, deployments, rollbacks")
    st.add_argument("--url")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_sandbox_status)
    met = sb.add_parser("metrics", help="simulated system metrics: show them, set scenarios")
    met.add_argument("--scenario", action="append", metavar="METRIC=KIND",
                     help="e.g. cpu=ramp, memory=spike, cpu=flat (repeatable); metrics: cpu, "
                     "memory, response_time_p95, error_rate, active_users, queue_depth")
    met.add_argument("--target", default="production", help="production or a deployment id")
    met.add_argument("--base", type=float, help="level before the scenario (default: healthy)")
    met.add_argument("--slope", dest="slope_per_min", type=float,
                     help="ramp per minute (default: reaches the threshold in 45 min)")
    met.add_argument("--noise", type=float, help="standard deviation of the noise")
    met.add_argument("--spike-p", type=float, help="share of samples that spike (spike: 0.1)")
    met.add_argument("--spike-height", type=float)
    met.add_argument("--ago-minutes", type=float,
                     help="start the scenario this long ago (its history is there at once)")
    met.add_argument("--speed", type=float, help="run the scenario's clock N times faster")
    met.add_argument("--reset", action="store_true", help="forget all scenarios and actions")
    met.add_argument("--url")
    met.add_argument("--json", action="store_true")
    met.set_defaults(func=cmd_sandbox_metrics)

    j = sub.add_parser("judge", help="verdicts for baseline/candidate samples, JSONL in and out")
    j.add_argument("--batch", required=True, help="JSONL file, or - for stdin")
    j.set_defaults(func=cmd_judge)
    c = sub.add_parser("changepoints", help="change points of series, JSONL in and out")
    c.add_argument("--batch", required=True, help="JSONL file, or - for stdin")
    c.set_defaults(func=cmd_changepoints)
    f = sub.add_parser("forecast", help="predicted threshold breaches of series, JSONL in and out")
    f.add_argument("--batch", required=True, help="JSONL file, or - for stdin")
    f.add_argument("--horizon-minutes", type=float, default=30.0)
    f.set_defaults(func=cmd_forecast)
    for name, (_, _, helptext) in DELEGATED.items():
        sub.add_parser(name, help=helptext + f" (see `atge {name} --help`)", add_help=False)
    return p


# Commands whose modules own their argument parsing (each imports only what it needs).
DELEGATED = {
    "loadtest": ("atge_assets.load.cli", "cli_main",
                 "load test a URL: closed (--users) or open (--rate) model"),
    "webhook-intake": ("atge_assets.deployments.cli", "webhook_intake_main",
                       "receive Vercel deployment webhooks for the sensor"),
    "abtest": ("atge_assets.abtest.cli", "cli_main",
               "A/B tests of model variants: analyze, assign, simulate"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        module, func, _ = DELEGATED[argv[0]]
        return getattr(importlib.import_module(module), func)(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # `atge judge --batch IN | head` stops quietly once head has enough, as Unix tools do
        # (Python's own advice: point stdout at devnull so the exit flush cannot fail again).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
