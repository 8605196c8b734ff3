"""The resources every feature uses: the deployment provider and the history database."""

import dagster as dg

from atge_assets.lib.protection import BYPASS_VARIABLE
from atge_assets.lib.resources import HistoryResource, VercelResource


def defs(settings) -> dg.Definitions:
    s = settings.shared
    return dg.Definitions(resources={
        # Bound only when set: an unset variable would fail every sensor tick before our code
        # could say what is missing.
        "vercel": VercelResource(**{k: dg.EnvVar(v) for k, v in
                                    (("token", "VERCEL_TOKEN"), ("project_id", "VERCEL_PROJECT_ID"))
                                    if v in s.provider_set},
                                 base_url=s.vercel_api_url, team_id=s.vercel_team_id),
        # By variable when it came from one: the UI and its API then show the name, not a URL
        # that may carry a password.
        "history": HistoryResource(url=dg.EnvVar(s.history_url_var) if s.history_url_var
                                   else s.history_url),
    })


def protection_bypass(settings):
    """The deployment-protection bypass secret for the resources that call deployments: bound by
    variable, so its value never shows in the UI."""
    return dg.EnvVar(BYPASS_VARIABLE) if settings.shared.protection_bypass_set else None
