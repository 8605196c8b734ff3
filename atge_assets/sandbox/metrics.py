"""Simulated system metrics of the ATGE app, for predictive monitoring (a sandbox extension).

Each metric of each target ("production" or a deployment id) follows a scenario: `flat` (noise
around a base), `ramp` (plus a slope per minute since the scenario began) or `spike` (flat, with
`spike_height` added to a share `spike_p` of the samples). A value is a pure function of the time,
the scenario and the actions taken, its noise a hash of (target, metric, second): any past window
can be asked for, as Prometheus keeps history, and one timestamp always has one value, across
queries and restarts.

Fast-forward: `ago_s` (or an absolute `start`) starts a scenario in the past (a ramp begun 40
minutes ago is 40 minutes up now, its history there to be queried); `speed` runs its clock N
times faster. The past changes with it: the monitoring intake reads its forecast window again
every minute, so the healthy minutes it stored before are replaced by the ramp, which the
forecaster then sees as a ramp, not as a step up to where the ramp is now.

Actions act from the moment they are taken: `scale` multiplies the replicas, which divide the
growth of cpu, response time and queue depth; `restart` starts memory and error rate over from
their base; `clear_cache` does the same for response time.

Routes (state kept in metrics.json beside the sandbox's state file):
  GET  /_sandbox/metrics[?target=production&at=unix_s]   the target's own metrics, as JSON
  POST /_sandbox/metrics/scenario  {metric, kind: ramp|spike|flat, target, base, slope_per_min,
                                    noise, spike_p, spike_height, ago_s or start, speed}
  POST /_sandbox/metrics/actions   {action: scale|restart|clear_cache, target, factor,
                                    max_replicas, metric, reason}
  GET  /_sandbox/metrics/actions[?target=]
  POST /_sandbox/metrics/reset
  GET  /api/v1/query_range?query=atge_cpu_percent{target="production"}&start=&end=&step=
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from pathlib import Path

from atge_assets.monitoring.metrics_source import (
    DEFAULT_THRESHOLDS,
    METRICS,
    PROM_NAMES,
)

log = logging.getLogger(__name__)

KINDS = ("ramp", "spike", "flat")
ACTIONS = ("scale", "restart", "clear_cache")
# (base, noise sd) of a healthy app
HEALTHY = {"cpu": (45.0, 2.0), "memory": (55.0, 1.5), "response_time_p95": (450.0, 40.0),
           "error_rate": (0.5, 0.15), "active_users": (120.0, 8.0), "queue_depth": (6.0, 1.5)}
SCALED = {"cpu", "response_time_p95", "queue_depth"}
RESETS = {"restart": {"memory", "error_rate"}, "clear_cache": {"response_time_p95"}}
CEILINGS = {"cpu": 100.0, "memory": 100.0, "error_rate": 100.0}
DEFAULT_RAMP_MIN = 45.0  # a default ramp reaches the default threshold this long after it starts
MAX_POINTS = 11_000
MAX_ACTIONS = 1000

_BY_PROM_NAME = {v: k for k, v in PROM_NAMES.items()}
_TARGET = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SELECTOR = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*$")
_LABEL = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"([^"\\]*)"\s*$')
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def _num(body: dict, key: str, default: float, lo: float, hi: float) -> float:
    raw = body.get(key, default)
    if isinstance(raw, bool):
        raise ValueError(f"{key} must be a number")
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, got {raw!r}") from None
    if not (lo <= v <= hi):
        raise ValueError(f"{key} must be between {lo:g} and {hi:g}, got {v:g}")
    return v


def _uniforms(target: str, metric: str, t: float) -> tuple[float, float, float]:
    h = hashlib.blake2b(f"{target}|{metric}|{math.floor(t)}".encode(), digest_size=24).digest()
    return tuple((int.from_bytes(h[i:i + 8], "big") + 0.5) / 2 ** 64 for i in (0, 8, 16))


class MetricsSim:
    """Scenarios and actions per target; thread-safe, saved to a JSON file on every change."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.RLock()
        self.scenarios: dict[str, dict[str, dict]] = {}
        self.actions: list[dict] = []
        if path and path.exists():
            try:
                raw = json.loads(path.read_text())
                self.scenarios, self.actions = dict(raw["scenarios"]), list(raw["actions"])
            except (ValueError, KeyError, TypeError) as exc:
                # A demo aid must not refuse to start over a damaged file: begin healthy.
                log.warning(f"sandbox metrics: {path} unreadable ({exc}); starting without it")

    def _save(self) -> None:
        if not self.path:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"scenarios": self.scenarios, "actions": self.actions}))
        os.replace(tmp, self.path)

    # -- changes -------------------------------------------------------------------------------
    def set_scenario(self, body: dict, target: str, now: float) -> dict:
        metric, kind = body.get("metric"), body.get("kind", "flat")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
        base0, noise0 = HEALTHY[metric]
        base = _num(body, "base", base0, 0, 1e9)
        gap = max(DEFAULT_THRESHOLDS[metric] - base, 0.0)
        sc = {
            "kind": kind, "base": base,
            "slope_per_min": _num(body, "slope_per_min",
                                  gap / DEFAULT_RAMP_MIN if kind == "ramp" else 0.0, -1e6, 1e6),
            "noise": _num(body, "noise", noise0, 0, 1e9),
            "spike_p": _num(body, "spike_p", 0.1 if kind == "spike" else 0.0, 0, 1),
            "spike_height": _num(body, "spike_height", 1.2 * gap, -1e9, 1e9),
            "speed": _num(body, "speed", 1.0, 0.01, 3600),
            "start": _num(body, "start", now - _num(body, "ago_s", 0.0, 0, 7 * 86400), 0, 1e11),
            "set_at": now,
        }
        with self._lock:
            self.scenarios.setdefault(target, {})[metric] = sc
            self._save()
        return dict(sc, metric=metric, target=target)

    def act(self, body: dict, target: str, now: float) -> dict:
        action = body.get("action")
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {list(ACTIONS)}, got {action!r}")
        with self._lock:
            record = {"id": len(self.actions) + 1, "at": now, "target": target, "action": action,
                      "metric": str(body.get("metric") or "")[:64],
                      "reason": str(body.get("reason") or "")[:500]}
            if action == "scale":
                before = self.replicas(target, now)
                cap = int(_num(body, "max_replicas", 10, 1, 100))
                if before >= cap:
                    raise PermissionError(f"{target} already runs {before} replicas, the maximum")
                after = min(cap, math.ceil(before * _num(body, "factor", 2.0, 1.01, 10)))
                record.update(replicas=after, replicas_before=before)
            self.actions = (self.actions + [record])[-MAX_ACTIONS:]
            self._save()
        return record

    def reset(self) -> None:
        with self._lock:
            self.scenarios, self.actions = {}, []
            self._save()

    # -- reads ---------------------------------------------------------------------------------
    def targets(self) -> list[str]:
        with self._lock:
            return sorted({"production", *self.scenarios, *(a["target"] for a in self.actions)})

    def replicas(self, target: str, t: float) -> int:
        with self._lock:
            scales = [a for a in self.actions if a["target"] == target and a["action"] == "scale"
                      and a["at"] <= t]
        return scales[-1]["replicas"] if scales else 1

    def series(self, target: str, metric: str, times: list[float]) -> list[float]:
        with self._lock:
            sc = self.scenarios.get(target, {}).get(metric)
            mine = [a for a in self.actions if a["target"] == target]
        if sc is None:
            base, noise = HEALTHY[metric]
            sc = {"base": base, "noise": noise, "slope_per_min": 0.0, "spike_p": 0.0,
                  "spike_height": 0.0, "speed": 1.0, "start": 0.0}
        resets = sorted(a["at"] for a in mine if metric in RESETS.get(a["action"], ()))
        scales = [(a["at"], a["replicas"]) for a in mine if a["action"] == "scale"]
        scale_at = [at for at, _ in scales]
        out = []
        for t in times:
            start = sc["start"]
            i = bisect.bisect_right(resets, t)
            if i:
                start = max(start, resets[i - 1])
            growth = sc["slope_per_min"] * max(0.0, t - start) / 60.0 * sc["speed"]
            if metric in SCALED:
                j = bisect.bisect_right(scale_at, t)
                growth /= scales[j - 1][1] if j else 1
            u1, u2, u3 = _uniforms(target, metric, t)
            v = (sc["base"] + growth
                 + sc["noise"] * math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
                 + (sc["spike_height"] if u3 < sc["spike_p"] else 0.0))
            out.append(round(min(max(v, 0.0), CEILINGS.get(metric, math.inf)), 4))
        return out

    def snapshot(self, target: str, t: float) -> dict:
        with self._lock:
            scenarios = {m: dict(sc) for m, sc in self.scenarios.get(target, {}).items()}
        return {"target": target, "timestamp": t, "replicas": self.replicas(target, t),
                "metrics": {m: self.series(target, m, [t])[0] for m in METRICS},
                "scenarios": scenarios}


_sims_lock = threading.Lock()


def _sim(server) -> MetricsSim:
    with _sims_lock:
        sim = getattr(server, "atge_metrics", None)
        if sim is None:
            state_path = server.state.path
            sim = MetricsSim(Path(state_path).parent / "metrics.json" if state_path else None)
            server.atge_metrics = sim
        return sim


def _target(handler, raw) -> str:
    target = str(raw or "production")
    if not _TARGET.match(target) or (target != "production"
                                     and handler.server.state.get(target) is None):
        raise ValueError(f"target must be 'production' or a sandbox deployment id, got {target!r}")
    return target


def handle(handler, method: str, path: str, query: dict) -> bool:
    if path == "/api/v1/query_range" and method == "GET":
        _query_range(handler, query)
        return True
    if path != "/_sandbox/metrics" and not path.startswith("/_sandbox/metrics/"):
        return False
    sim, now = _sim(handler.server), time.time()
    if method == "GET" and path == "/_sandbox/metrics":
        at = _num(query, "at", now, 0, 1e11)
        handler._send(200, sim.snapshot(_target(handler, query.get("target")), at))
    elif method == "POST" and path == "/_sandbox/metrics/scenario":
        body = handler._body()
        handler._send(201, sim.set_scenario(body, _target(handler, body.get("target")), now))
    elif method == "GET" and path == "/_sandbox/metrics/actions":
        target = query.get("target")
        handler._send(200, {"actions": [a for a in sim.actions
                                        if target is None or a["target"] == target]})
    elif method == "POST" and path == "/_sandbox/metrics/actions":
        body = handler._body()
        try:
            handler._send(201, sim.act(body, _target(handler, body.get("target")), now))
        except PermissionError as exc:
            handler._send(409, {"error": str(exc)})
    elif method == "POST" and path == "/_sandbox/metrics/reset":
        sim.reset()
        handler._send(200, {})
    else:
        handler._send(404, {"error": "NOT_FOUND"})
    return True


# -- Prometheus's query_range, for plain selectors -------------------------------------------


def _seconds(raw, name: str, duration: bool = False) -> float:
    if raw is None:
        raise ValueError(f'missing parameter "{name}"')
    m = _DURATION.match(raw) if duration else None
    try:
        v = float(m[1]) * _UNIT_S[m[2]] if m else float(raw)
    except ValueError:
        raise ValueError(f'invalid parameter "{name}": cannot parse {raw!r} to a valid '
                         f'{"duration" if duration else "timestamp"}') from None
    if not math.isfinite(v):
        raise ValueError(f'invalid parameter "{name}": {raw!r}')
    return v


def _query_range(handler, query: dict) -> None:
    try:
        start, end = _seconds(query.get("start"), "start"), _seconds(query.get("end"), "end")
        step = _seconds(query.get("step"), "step", duration=True)
        if end < start:
            raise ValueError('invalid parameter "end": end timestamp must not be before start time')
        if step <= 0:
            raise ValueError("zero or negative query resolution step widths are not accepted. "
                             "Try a positive integer")
        if (end - start) / step > MAX_POINTS:
            raise ValueError("exceeded maximum resolution of 11,000 points per timeseries. Try "
                             "decreasing the query resolution (?step=XX)")
        m = _SELECTOR.match(query.get("query") or "")
        if not m:
            raise ValueError('the sandbox answers plain selectors only: name{label="value",...}')
        labels = {}
        for part in filter(str.strip, (m[2] or "").split(",")):
            lm = _LABEL.match(part)
            if not lm:
                raise ValueError(f"unsupported label matcher {part.strip()!r}: "
                                 'only label="value"')
            labels[lm[1]] = lm[2]
    except ValueError as exc:
        return handler._send(400, {"status": "error", "errorType": "bad_data", "error": str(exc)})
    sim, metric = _sim(handler.server), _BY_PROM_NAME.get(m[1])
    times = [start + k * step for k in range(int(math.floor((end - start) / step + 1e-9)) + 1)]
    result = []
    if metric is not None:
        for target in sim.targets():
            series_labels = {"__name__": m[1], "target": target, "job": "atge-sandbox"}
            if all(series_labels.get(k) == v for k, v in labels.items()):
                values = sim.series(target, metric, times)
                result.append({"metric": series_labels,
                               "values": [[t, str(v)] for t, v in zip(times, values)]})
    handler._send(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})
