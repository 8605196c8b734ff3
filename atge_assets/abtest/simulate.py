"""A simulator of experiment results with known truths, for the demo and the accuracy benchmark."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from atge_assets.abtest.config import ExperimentConfig, Variant, _config
from atge_assets.abtest.intake import ERROR, LOSS, PENDING, WIN


# -- simulation ------------------------------------------------------------------------------------
def _per_variant(value, ids: Sequence[str], name: str) -> dict[str, float]:
    if isinstance(value, Mapping):
        missing = [i for i in ids if i not in value]
        if missing:
            raise ValueError(f"{name}: no value for variant(s) {', '.join(missing)}")
        return {i: float(value[i]) for i in ids}
    return {i: float(value) for i in ids}


def simulate_results(
    variants: ExperimentConfig | Sequence[Variant | Mapping],
    n_signals: int,
    true_win_rates: Mapping[str, float] | float,
    *,
    seed: int = 0,
    experiment: str | None = None,
    analysis_time: Mapping[str, float] | float = 20.0,
    analysis_time_sigma: float = 0.35,
    error_rate: Mapping[str, float] | float = 0.01,
    pending_rate: float = 0.0,
    avg_win: Mapping[str, float] | float = 100.0,
    avg_loss: Mapping[str, float] | float = 100.0,
    traffic: Mapping[str, float] | None = None,
    start: float = 1_767_225_600.0,
    signals_per_hour: float = 60.0,
) -> list[dict]:
    """Result rows with known truth: rows of `einstein_ab_test_results` for n_signals signals.

    Each signal goes to an enabled variant with the configured traffic (or `traffic`, percent per
    variant, to simulate a broken split). Drawing the variant at random is what hashing fresh user
    ids does, at a fraction of the cost. Per variant: win rate among resolved signals, median
    analysis time in seconds (log-normal with `analysis_time_sigma`), error rate, mean win and
    loss sizes (profit_loss is +win or -loss, exponential). Confidence is Beta(7, 3), mean 0.7.
    `pending_rate` of the signals have no outcome yet. Timestamps are a Poisson stream from `start`.
    """
    config = _config(variants)
    key = experiment or config.experiment
    ids = [v.id for v in config.enabled]
    if isinstance(n_signals, bool) or not isinstance(n_signals, int) or n_signals < 0:
        raise ValueError(f"n_signals must be a whole number >= 0, got {n_signals!r}")
    win = _per_variant(true_win_rates, ids, "true_win_rates")
    med = _per_variant(analysis_time, ids, "analysis_time")
    err = _per_variant(error_rate, ids, "error_rate")
    gain = _per_variant(avg_win, ids, "avg_win")
    loss = _per_variant(avg_loss, ids, "avg_loss")
    for name, values, lo, hi in (("true_win_rates", win, 0, 1), ("error_rate", err, 0, 1)):
        if any(not lo <= x <= hi for x in values.values()):
            raise ValueError(f"{name} must be in [{lo}, {hi}]")
    shares = np.array(list(_per_variant(traffic, ids, "traffic").values()) if traffic else
                      [v.traffic_percent for v in config.enabled], dtype=float)
    rng = np.random.default_rng(seed)
    arm = rng.choice(len(ids), size=n_signals, p=shares / shares.sum())
    p_win = np.array([win[i] for i in ids])[arm]
    p_err = np.array([err[i] for i in ids])[arm]
    u = rng.random(n_signals)
    is_err = u < p_err
    is_pending = ~is_err & (rng.random(n_signals) < pending_rate)
    is_win = rng.random(n_signals) < p_win
    times = np.array([med[i] for i in ids])[arm] * np.exp(
        analysis_time_sigma * rng.standard_normal(n_signals))
    conf = rng.beta(7, 3, n_signals)
    size = rng.exponential(1.0, n_signals)
    pl = np.where(is_win, np.array([gain[i] for i in ids])[arm] * size,
                  -np.array([loss[i] for i in ids])[arm] * size)
    stamps = start + np.cumsum(rng.exponential(3600.0 / signals_per_hour, n_signals))
    outcome = np.where(is_err, ERROR, np.where(is_pending, PENDING, np.where(is_win, WIN, LOSS)))
    resolved = ~is_err & ~is_pending
    # Whole columns to Python values at once: per-value float() and round() cost more than the
    # random draws.
    columns = zip(np.array(ids, dtype=object)[arm].tolist(), outcome.tolist(),
                  np.where(is_err, None, np.round(times, 3).astype(object)).tolist(),
                  np.where(is_err, None, np.round(conf, 4).astype(object)).tolist(),
                  np.where(resolved, np.round(pl, 2).astype(object), None).tolist(),
                  np.round(stamps, 3).tolist())
    return [{"experiment": key, "variant_id": vid, "signal_id": f"sim{seed}-{k:07d}",
             "analysis_time": t, "confidence": c, "outcome": o, "profit_loss": p, "timestamp": ts}
            for k, (vid, o, t, c, p, ts) in enumerate(columns)]
