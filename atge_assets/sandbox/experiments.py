"""Sandbox A/B experiments: variants with known true win rates, and results that grow with time.

- GET  /_sandbox/experiments                  every experiment: config, live split, true win
                                              rates, status, signals so far
- POST /_sandbox/experiments                  create or reset one: {key, true_win_rates,
                                              variants?, control?, plan?, guardrails?,
                                              signals_per_minute?, seed?, backfill_minutes?,
                                              analysis_time?, error_rate?}
- GET  /_sandbox/experiments/{key}            one of them
- GET  /_sandbox/experiments/{key}/results?since=<epoch s>&limit=<n>
                                              rows of einstein_ab_test_results, timestamp >=
                                              since, up to now: {"rows", "more"}
- POST /_sandbox/experiments/{key}/split      the promotion hook: {split: {variant: percent},
                                              winner?, reason?, run_id?} -> the new split

Results are a function of the experiment and the clock only: signal k is stamped
started_at + (k + 1) / rate and drawn by `simulate_results` in chunks seeded by (seed, chunk), so
every call, before or after a restart, serves the same rows, and a later call only adds rows.
The config served is the experiment's design and never changes. A new split ends the experiment:
from then on traffic follows the split outside the experiment and no more rows appear, so the
analysis keeps its answer.
State lives in experiments.json beside the sandbox's state file.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path

from atge_assets.abtest.config import (
    DEFAULT_EXPERIMENT,
    ExperimentConfig,
    default_config,
)
from atge_assets.abtest.simulate import simulate_results

_PREFIX = "/_sandbox/experiments"
_ROUTE = re.compile(r"^/_sandbox/experiments/(?P<key>[A-Za-z0-9][A-Za-z0-9._-]{0,63})"
                    r"(?P<rest>/results|/split)?$")
_CHUNK = 500
_MAX_LIMIT = 50_000
_init_lock = threading.Lock()

# The demo's experiment under `atge up`: medium reasoning is truly better (60% against 52%) and
# faster, so the scheduled analysis goes from "collecting" to a winner within about an hour.
_DEMO = {"true_win_rates": {"gpt51-high": 0.52, "gpt51-medium": 0.60},
         "analysis_time": {"gpt51-high": 20.0, "gpt51-medium": 12.0},
         "signals_per_minute": 40.0, "backfill_minutes": 30.0, "seed": 1}


class Experiments:
    """Thread-safe experiment specs with a JSON file behind them, and a cache of generated rows."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.RLock()
        self._chunks: OrderedDict[tuple, list[dict]] = OrderedDict()
        self.specs: dict[str, dict] = {}
        if path and path.exists():
            self.specs = json.loads(path.read_text()).get("experiments", {})
        if not self.specs:
            self.create({"key": DEFAULT_EXPERIMENT, **_DEMO})

    def _save(self) -> None:
        if not self.path:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"experiments": self.specs}, indent=1))
        os.replace(tmp, self.path)

    # -- changes -------------------------------------------------------------------------------
    def create(self, body: dict, now: float | None = None) -> dict:
        key = body.get("key")
        if not isinstance(key, str) or not _ROUTE.match(f"{_PREFIX}/{key}"):
            raise ValueError("key must be 1-64 letters, digits, '.', '_' or '-'")
        if "variants" in body:
            config = ExperimentConfig.from_dict(
                {k: body[k] for k in ("variants", "control", "plan", "guardrails") if k in body},
                key)
        else:
            design = default_config(key).to_dict()
            design.update({k: body[k] for k in ("plan", "guardrails") if k in body})
            config = ExperimentConfig.from_dict(design)
        if not isinstance(body.get("true_win_rates"), (dict, int, float)):
            raise ValueError("true_win_rates is required: {variant_id: rate} or one rate for all")
        spm = float(body.get("signals_per_minute", 60.0))
        backfill = float(body.get("backfill_minutes", 0.0))
        if not (0 < spm <= 6000) or not (0 <= backfill <= 60 * 24 * 30):
            raise ValueError("signals_per_minute must be in (0, 6000], backfill_minutes in "
                             "[0, 43200]")
        now = time.time() if now is None else now
        with self._lock:
            spec = {
                "key": key, "config": config.to_dict(),
                "true_win_rates": body.get("true_win_rates"),
                "analysis_time": body.get("analysis_time", 20.0),
                "error_rate": body.get("error_rate", 0.01),
                "signals_per_minute": spm, "seed": int(body.get("seed", 0)),
                "started_at": now - backfill * 60, "ended_at": None,
                # A reset bumps the revision, so the new run's signal ids never collide.
                "revision": self.specs.get(key, {}).get("revision", -1) + 1,
                "split": {v.id: v.traffic_percent if v.enabled else 0.0 for v in config.variants},
                "splits": [],
            }
            self._simulate(spec, 1, 0)  # bad true rates, times or error rates fail here, not later
            self.specs[key] = spec
            self._save()
            return self.describe(key, now)

    def set_split(self, key: str, body: dict, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        with self._lock:
            spec = self.specs[key]
            split = body.get("split")
            ids = list(spec["split"])
            if not isinstance(split, dict) or not split:
                raise ValueError("split must be an object {variant_id: percent}")
            unknown = [k for k in split if k not in ids]
            if unknown:
                raise ValueError(f"unknown variant(s) {', '.join(map(str, unknown))} "
                                 f"(variants: {', '.join(ids)})")
            new = {v: float(split.get(v, 0.0)) for v in ids}
            if any(not 0 <= p <= 100 for p in new.values()) or abs(sum(new.values()) - 100) > 1e-6:
                raise ValueError(f"split must be percentages summing to 100, got {new}")
            previous = spec["split"]
            event = {"at": now, "split": new, "previous": previous,
                     **{k: str(body[k])[:500] for k in ("winner", "reason", "run_id") if k in body}}
            spec["split"] = new
            spec["splits"].append(event)
            if spec["ended_at"] is None and new != previous:
                spec["ended_at"] = now
            self._save()
            return {"experiment": key, "split": new, "previous": previous, "at": now,
                    "status": "ended" if spec["ended_at"] is not None else "running"}

    # -- reads ---------------------------------------------------------------------------------
    def describe(self, key: str, now: float | None = None) -> dict:
        with self._lock:
            spec = dict(self.specs[key])
        spec["status"] = "running" if spec["ended_at"] is None else "ended"
        spec["signals"] = self._count(spec, time.time() if now is None else now)
        return spec

    def results(self, key: str, since: float | None, limit: int,
                now: float | None = None) -> dict:
        now = time.time() if now is None else now
        with self._lock:
            spec = self.specs[key]
        dt = 60.0 / spec["signals_per_minute"]
        first = 0 if since is None else max(0, math.floor((since - spec["started_at"]) / dt) - 1)
        count = self._count(spec, now)
        rows: list[dict] = []
        k = first
        while k < count and len(rows) <= limit:
            chunk = self._chunk(spec, k // _CHUNK)
            rows.extend(r for r in chunk[k % _CHUNK:min(_CHUNK, count - (k // _CHUNK) * _CHUNK)]
                        if since is None or r["timestamp"] >= since)
            k = (k // _CHUNK + 1) * _CHUNK
        return {"rows": rows[:limit], "more": len(rows) > limit}

    @staticmethod
    def _count(spec: dict, now: float) -> int:
        end = now if spec["ended_at"] is None else min(now, spec["ended_at"])
        return max(0, math.floor((end - spec["started_at"]) * spec["signals_per_minute"] / 60.0))

    def _simulate(self, spec: dict, n: int, seed: int) -> list[dict]:
        return simulate_results(ExperimentConfig.from_dict(spec["config"]), n,
                                spec["true_win_rates"], seed=seed,
                                analysis_time=spec["analysis_time"], error_rate=spec["error_rate"])

    def _chunk(self, spec: dict, i: int) -> list[dict]:
        cache_key = (spec["key"], spec["revision"], i)
        with self._lock:
            if cache_key in self._chunks:
                self._chunks.move_to_end(cache_key)
                return self._chunks[cache_key]
        rows = self._simulate(spec, _CHUNK, spec["seed"] * 1_000_003 + i)
        dt = 60.0 / spec["signals_per_minute"]
        for j, row in enumerate(rows):
            k = i * _CHUNK + j
            row["signal_id"] = f"{spec['key']}-r{spec['revision']}-{k:07d}"
            row["timestamp"] = round(spec["started_at"] + (k + 1) * dt, 3)
        with self._lock:
            self._chunks[cache_key] = rows
            while len(self._chunks) > 64:
                self._chunks.popitem(last=False)
        return rows


def _experiments(server) -> Experiments:
    with _init_lock:
        exp = getattr(server, "_atge_experiments", None)
        if exp is None:
            state_path = server.state.path
            exp = Experiments(Path(state_path).parent / "experiments.json" if state_path else None)
            server._atge_experiments = exp
        return exp


def handle(handler, method: str, path: str, query: dict) -> bool:
    if path != _PREFIX and not path.startswith(_PREFIX + "/"):
        return False
    try:
        _answer(handler, _experiments(handler.server), method, path, query)
    except TypeError as exc:  # a null or a list where a number belongs: the client's mistake
        raise ValueError(f"bad request body: {exc}") from None
    return True


def _answer(handler, exp: Experiments, method: str, path: str, query: dict) -> None:
    if path == _PREFIX and method == "GET":
        return handler._send(200, {"experiments": [exp.describe(k) for k in sorted(exp.specs)]})
    if path == _PREFIX and method == "POST":
        return handler._send(201, exp.create(handler._body()))
    m = _ROUTE.match(path)
    if path != _PREFIX and (not m or m["key"] not in exp.specs):
        return handler._send(404, {"error": "EXPERIMENT_NOT_FOUND", "path": path})
    key, rest = (m["key"], m["rest"]) if m else (None, None)
    if method == "GET" and key and rest is None:
        return handler._send(200, exp.describe(key))
    if method == "GET" and rest == "/results":
        since = float(query["since"]) if query.get("since") else None
        limit = max(1, min(_MAX_LIMIT, int(query.get("limit", 10_000))))
        return handler._send(200, exp.results(key, since, limit))
    if method == "POST" and rest == "/split":
        return handler._send(200, exp.set_split(key, handler._body()))
    return handler._send(405, {"error": "METHOD_NOT_ALLOWED"})
