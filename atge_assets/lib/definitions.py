"""The resources every feature uses: the deployment provider and the history database."""

import dagster as dg

from atge_assets.lib.resources import HistoryResource, VercelResource


def defs(settings) -> dg.Definitions:
    s = settings.shared
    return dg.Definitions(resources={
        "vercel": VercelResource(token=dg.EnvVar("VERCEL_TOKEN"),
                                 project_id=dg.EnvVar("VERCEL_PROJECT_ID"),
                                 base_url=s.vercel_api_url, team_id=s.vercel_team_id),
        "history": HistoryResource(url=s.history_url),
    })
