"""The forecast chart shown with every `metric_forecasts` materialization."""

from __future__ import annotations

from atge_assets.lib.charts import figure, to_png
from atge_assets.monitoring.forecast import Forecast


def forecast_chart_png(metric: str, unit: str, ts: list[float], values: list[float],
                       f: Forecast, now: float) -> bytes:
    """The window's samples, the forecast level with its interval to the horizon, the threshold
    and the expected crossing: what the sensor acts on, at a glance. Sized to be read at the
    UI's width (720 px), legend beside the data; still a few kB (32 colours)."""
    with figure(figsize=(8, 2.8), dpi=90) as (fig, ax):
        ax.plot([(t - now) / 60 for t in ts], values, ".", ms=3, color="0.45", label="samples")
        h = f.horizon_minutes
        if f.level is not None and f.forecast is not None:
            ax.plot([0, h], [f.level, f.forecast], color="C0", label=f"forecast ({f.method})")
            ax.fill_between([0, h], [f.level, f.interval_low], [f.level, f.interval_high],
                            color="C0", alpha=0.2, label=f"{f.confidence:.0%} interval")
        ax.axhline(f.threshold, color="red", ls="--", lw=1, label="threshold")
        if f.minutes_to_threshold is not None and f.minutes_to_threshold <= h:
            ax.axvline(f.minutes_to_threshold, color="orange", ls=":", lw=1.5,
                       label=f"crossing in {f.minutes_to_threshold:.0f} min")
        ax.axvline(0, color="black", lw=0.5)
        ax.set_title(f"{metric}: {f.status}", fontsize=11)
        ax.set_xlabel("minutes from now", fontsize=9)
        ax.set_ylabel(unit, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return to_png(fig, colors=32)
