"""Settings of the per-deployment graph: what to measure and how to act on a regression."""


from typing import Optional

import dagster as dg

from atge_assets.deployments.suite import DEFAULT_SUITE, Suite, metrics_from_json
from atge_assets.lib.protection import bypass_headers


class BenchmarkResource(dg.ConfigurableResource):
    """How each deployment is measured.

    `suite_json` replaces the default suite (the plan's four metrics) with a JSON list of
    `{"name", "path", "method", "body", "phase", "timeout_s", "baseline_ms", "threshold"}`.
    A metric is looked at after every `samples` a side, up to the `max_samples` budget (the
    sequential design in sequential.py); what is undecided at the budget is held for a person.
    `allowed_hosts` adds host patterns to those the provider vouches for; nothing else is called.
    """

    samples: int = 20
    warmup: int = 2
    # The budget: undecided metrics are re-measured in rounds of `samples` until this many.
    max_samples: int = 240
    baseline_scale: float = 1.0
    baseline_deployments: int = 3
    allowed_hosts: list[str] = []
    suite_json: str | None = None
    # Vercel's "Protection Bypass for Automation" secret, bound from VERCEL_AUTOMATION_BYPASS_SECRET
    # with dg.EnvVar: sent to deployments only (see lib/protection.py).
    protection_bypass: str | None = None

    def request_headers(self) -> dict[str, str]:
        return bypass_headers(self.protection_bypass)

    def suite(self) -> Suite:
        metrics = metrics_from_json(self.suite_json) if self.suite_json else DEFAULT_SUITE
        return Suite(metrics, samples=self.samples, warmup=self.warmup,
                     baseline_scale=self.baseline_scale).validate()


class ReleasePolicyResource(dg.ConfigurableResource):
    """What the graph may do on its own.

    `dry_run` records "would roll back" and calls nothing. `auto_promote` promotes previews that
    pass; off, a person promotes by materializing `promotion`. `smoke_json` replaces the default
    smoke tests with a JSON list of `{"name", "path", "method", "body", "expect_status",
    "expect_keys", "max_ms"}`.
    """

    dry_run: bool = False
    auto_promote: bool = True
    smoke_json: Optional[str] = None
