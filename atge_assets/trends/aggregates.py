"""Trend aggregates over the history: per metric, per day and per deployment, and their charts."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from atge_assets.lib.charts import figure, to_png

AGGS = ["count", "mean", "p50", "p95", "min", "max"]


def _agg(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    g = df.groupby(keys, sort=True)["value_ms"]
    out = pd.DataFrame({
        "count": g.count(), "mean": g.mean(), "p50": g.median(), "p95": g.quantile(0.95),
        "min": g.min(), "max": g.max(),
    }).reset_index()
    # Change against the previous window of the same metric (previous day / previous deployment).
    out["change_pct"] = out.groupby("metric")["p50"].pct_change() * 100
    return out


def frame(rows: Sequence[dict]) -> pd.DataFrame:
    cols = ["deployment_id", "metric", "value_ms", "started_at", "created_ms", "target", "verdict"]
    df = pd.DataFrame(list(rows), columns=cols)
    df["value_ms"] = pd.to_numeric(df["value_ms"], errors="coerce")
    df = df.dropna(subset=["value_ms"])
    df["day"] = pd.to_datetime(df["started_at"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
    return df


def by_day(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return pd.DataFrame(columns=["metric", "day", *AGGS, "change_pct"])
    return _agg(df, ["metric", "day"])


def by_deployment(df: pd.DataFrame) -> pd.DataFrame:
    """Deployments in creation order, so `change_pct` is against the deployment before."""
    if df.empty:
        return pd.DataFrame(columns=["metric", "created_ms", "deployment_id", "verdict", *AGGS,
                                     "change_pct"])
    out = _agg(df, ["metric", "created_ms", "deployment_id"])
    verdicts = df.drop_duplicates("deployment_id").set_index("deployment_id")["verdict"]
    out.insert(3, "verdict", out["deployment_id"].map(verdicts))
    return out


def change_points(per_deployment: pd.DataFrame) -> list[dict]:
    """Shifts in each metric's p50 across deployments, each tied to the deployment where the new
    regime starts (for a creep: where the drift begins)."""
    from atge_assets.trends.changepoints import detect

    out = []
    for metric, d in per_deployment.groupby("metric", sort=True):
        d = d.sort_values("created_ms").reset_index(drop=True)
        for cp in detect(list(d["p50"])):
            out.append({
                "metric": metric, "index": cp.index, "deployment_id": d.loc[cp.index, "deployment_id"],
                "kind": cp.kind, "before_ms": cp.before, "after_ms": cp.after,
                "change_pct": cp.change * 100, "p_value": cp.p_value,
            })
    return out


def alerts(points: Sequence[dict], thresholds: dict[str, float], default: float = 0.10
           ) -> list[dict]:
    """Change points that made a metric slower by more than its threshold: a step of +12%, or a
    creep whose small steps add up past it."""
    return [p for p in points if p["change_pct"] > 100 * thresholds.get(p["metric"], default)]


def latest_numbers(per_deployment: pd.DataFrame) -> dict[str, float]:
    """`<metric>_p50_ms`, `<metric>_p95_ms` and `<metric>_change_pct` of each metric's newest
    deployment, rounded to what a person reads (NaN left out: it is no number to plot)."""
    out = {}
    for metric, d in per_deployment.groupby("metric", sort=True):
        last = d.sort_values("created_ms").iloc[-1]
        for col, key in (("p50", "p50_ms"), ("p95", "p95_ms"), ("change_pct", "change_pct")):
            v = last[col]
            if v == v and v is not None:
                out[f"{metric}_{key}"] = round(float(v), 1)
    return out


def short_id(dep_id: str, keep: int = 10) -> str:
    """A deployment id short enough for an axis, still matching the releases table by prefix."""
    return dep_id if len(dep_id) <= keep + 1 else dep_id[:keep] + "…"


def chart_png(per_deployment: pd.DataFrame, metric: str, marks: Sequence[int] = (), *,
              baseline_ms: float | None = None, limit_ms: float | None = None) -> bytes:
    """p50 with the p95 band over deployments, named on the axis (oldest to newest); regressed
    deployments in red, change points marked where the new regime starts, and the plan's
    baseline and absolute limit as lines, so a trend and its distance to the limit are seen."""
    d = per_deployment[per_deployment["metric"] == metric].reset_index(drop=True)
    with figure(figsize=(9, 3.2), dpi=100) as (fig, ax):
        x = list(range(len(d)))
        ax.fill_between(x, d["p50"], d["p95"], alpha=0.25, label="p50–p95")
        ax.plot(x, d["p50"], marker="o", ms=4, label="p50")
        bad = d.index[d["verdict"] == "regressed"]
        ax.scatter(bad, d.loc[bad, "p50"], color="red", zorder=3, label="regressed")
        if baseline_ms is not None:
            ax.axhline(baseline_ms, color="0.4", ls=":", lw=1.2,
                       label=f"baseline {baseline_ms:.1f} ms")
        if limit_ms is not None:
            ax.axhline(limit_ms, color="red", ls="--", lw=1.2, label=f"limit {limit_ms:.1f} ms")
        for i, m in enumerate(marks):
            ax.axvline(m, color="orange", ls="--", lw=1.5,
                       label="change point" if i == 0 else None)
            ax.annotate(short_id(str(d.loc[m, "deployment_id"])), (m, 1), xycoords=(
                "data", "axes fraction"), xytext=(3, -12), textcoords="offset points",
                fontsize=8, color="darkorange")
        # Whole deployments only, named; at most ~12 labels so they stay readable.
        step = max(1, -(-len(d) // 12))
        ax.set_xticks(x[::step])
        ax.set_xticklabels([short_id(str(i)) for i in d["deployment_id"]][::step], rotation=30,
                           ha="right", fontsize=8)
        ax.set_xlim(-0.5, max(len(d) - 0.5, 0.5))
        ax.set_title(f"{metric}: p50 per deployment", fontsize=11)
        ax.set_ylabel("ms", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the data
        return to_png(fig)
