"""Where A/B experiments, their results and their promotions come from and go to."""


import json
from pathlib import Path
from typing import Optional

import dagster as dg
import httpx

from atge_assets.abtest.config import ConfigError, ExperimentConfig, default_config
from atge_assets.lib.http import PostOutcome, RetryPolicy, post_with_retry

HISTORY, CSV, SANDBOX = "history", "csv", "sandbox"


class SourceError(RuntimeError):
    """The experiments or results source cannot be read (unreachable, bad answer)."""


class ExperimentsResource(dg.ConfigurableResource):
    """A/B experiments of Einstein's model variants: configs, results intake, promotion.

    Configs, the first that is set:
    - `experiments_file` (ATGE_EXPERIMENTS_FILE): JSON in `atge abtest`'s variants format, one
      experiment, a list of them, or `{"experiments": [...]}`;
    - `sandbox_url` (ATGE_SANDBOX_URL, set by `atge up`): the sandbox's
      `GET /_sandbox/experiments`;
    - otherwise the built-in example: GPT-5.1 high reasoning 80% against medium 20%.
    Results go into the history table `einstein_ab_test_results` ("intake"), from, the first set:
    `results_csv` (ATGE_AB_RESULTS_CSV); the sandbox's results feed (`sandbox_url`); otherwise the
    app writes that table itself and the intake only checks its rows.
    Promotion: a winner (significant, guardrails passed, sample ratio sound) gets all the traffic
    through a POST of `{experiment, winner, split, reason, run_id}` to `promotion_url`
    (ATGE_AB_PROMOTION_URL; `{experiment}` is replaced by the key; default: the sandbox's
    `/_sandbox/experiments/{experiment}/split`). With `auto_promote` off
    (ATGE_AB_AUTO_PROMOTE=false) the winner waits until someone materializes `ab_test_promotion`
    with `promote: true`.
    """

    experiments_file: Optional[str] = None
    sandbox_url: Optional[str] = None
    results_csv: Optional[str] = None
    auto_promote: bool = True
    promotion_url: Optional[str] = None
    timeout_s: float = 10.0

    # -- configs -------------------------------------------------------------------------------
    def config_source(self) -> str:
        if self.experiments_file:
            return self.experiments_file
        if self.sandbox_url:
            return f"{self.sandbox_url.rstrip('/')}/_sandbox/experiments"
        return "built-in example (default_config)"

    def configs(self) -> list[ExperimentConfig]:
        """Every experiment's validated config; SourceError or ConfigError say what is wrong."""
        if self.experiments_file:
            try:
                data = json.loads(Path(self.experiments_file).read_text(encoding="utf-8-sig"))
            except (OSError, ValueError) as exc:
                raise SourceError(f"cannot read {self.experiments_file}: {exc}") from None
            if isinstance(data, dict) and "experiments" in data:
                items = data["experiments"]
            elif isinstance(data, list) and data and all(
                    isinstance(x, dict) and "variants" in x for x in data):
                items = data
            else:  # one experiment: an object, or just its list of variants
                items = [data]
            if not isinstance(items, list):
                raise ConfigError([f"{self.experiments_file}: experiments must be a list"])
        elif self.sandbox_url:
            items = [e["config"] for e in self._get("/_sandbox/experiments")["experiments"]]
        else:
            return [default_config()]
        configs, problems = [], []
        for i, item in enumerate(items):
            try:
                configs.append(ExperimentConfig.from_dict(item))
            except ConfigError as exc:
                problems += [f"experiments[{i}]: {p}" for p in exc.problems]
        keys = [c.experiment for c in configs]
        problems += [f"experiment {k!r} is configured more than once"
                     for k in sorted({k for k in keys if keys.count(k) > 1})]
        if problems:
            raise ConfigError([f"{self.config_source()}: {p}" for p in problems])
        return configs

    def config(self, experiment: str) -> ExperimentConfig:
        for c in self.configs():
            if c.experiment == experiment:
                return c
        raise SourceError(f"experiment {experiment!r} is not configured in {self.config_source()}")

    # -- results -------------------------------------------------------------------------------
    def results_mode(self) -> str:
        return CSV if self.results_csv else SANDBOX if self.sandbox_url else HISTORY

    def fetch_results(self, experiment: str, since: float | None,
                      page: int = 10_000) -> list[dict]:
        """The sandbox feed's rows with timestamp >= since, every page of them."""
        rows: list[dict] = []
        seen: set[str] = set()
        while True:
            params = {"limit": page, **({"since": since} if since is not None else {})}
            body = self._get(f"/_sandbox/experiments/{experiment}/results", params)
            fresh = [r for r in body["rows"] if r.get("signal_id") not in seen]
            rows += fresh
            seen.update(r.get("signal_id") for r in fresh)
            # `since` is inclusive, so a page can repeat the previous one's last rows.
            if not body.get("more") or not fresh:
                return rows
            since = fresh[-1]["timestamp"]

    def _get(self, path: str, params: dict | None = None) -> dict:
        url = f"{self.sandbox_url.rstrip('/')}{path}"
        try:
            resp = httpx.get(url, params=params, timeout=self.timeout_s)
            resp.raise_for_status()
            return resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SourceError(f"GET {url}: {type(exc).__name__}: {exc}"[:500]) from None

    # -- promotion -----------------------------------------------------------------------------
    def promotion_target(self, experiment: str) -> str | None:
        if self.promotion_url:
            return self.promotion_url.replace("{experiment}", experiment)
        if self.sandbox_url:
            return f"{self.sandbox_url.rstrip('/')}/_sandbox/experiments/{experiment}/split"
        return None

    def promote(self, experiment: str, body: dict) -> PostOutcome:
        """POST the new split, retrying 5xx and network errors (a split set twice is the same)."""
        url = self.promotion_target(experiment)
        if url is None:
            return PostOutcome(False, 0, None, 0.0, "no promotion hook (ATGE_AB_PROMOTION_URL)")
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            return post_with_retry(client, url, json.dumps(body).encode(),
                                   {"content-type": "application/json"},
                                   RetryPolicy(max_attempts=3, max_total_wait_s=10.0))
