"""How rolling releases are driven: where the production domain's split can be observed, and
whether the graph may act."""

import dagster as dg


class RolloutResource(dg.ConfigurableResource):
    """`production_url` and `canary_header` let each stage sample the production domain and count
    the requests the canary answered (see rollouts/settings.py); `dry_run` records what would be
    done and calls nothing."""

    production_url: str | None = None
    canary_header: str | None = None
    traffic_samples: int = 40
    dry_run: bool = False
