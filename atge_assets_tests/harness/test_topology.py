"""The production topology, as a team runs it: a code server, `dagster-daemon run` and
`dagster-webserver` as separate processes on Postgres. The daemon is killed with SIGKILL while
deployments keep arriving; the UI's own GraphQL API is the client that reads the result."""

import pytest

from atge_assets.deployments.history import DeploymentHistory
from atge_assets.harness import drills
from atge_assets.harness.stack import Topology, wait_until
from atge_assets_tests.conftest import fresh_pg_database

ASSET_GRAPH = """
{ assetNodes { assetKey { path } dependencyKeys { path } } }
"""


@pytest.mark.slow
@pytest.mark.postgres
def test_daemon_kill_loses_and_doubles_nothing(tmp_path):
    with fresh_pg_database() as url:
        topo = Topology(tmp_path / "topo", url)
        store = None
        try:
            topo.start_all()
            wait_until(topo.ready, 300, what="webserver and sandbox")
            # The UI's view of the graph, over its GraphQL API.
            nodes = wait_until(lambda: topo.graphql(ASSET_GRAPH)["assetNodes"], 120,
                               what="the code location loaded in the webserver")
            deps = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"])
                                                     for d in n["dependencyKeys"]} for n in nodes}
            assert deps["rollback"] == {"baseline_comparison", "smoke_tests"}
            assert deps["baseline_comparison"] == {"benchmark_timings", "baseline"}
            store = DeploymentHistory(url)
            first = topo.sandbox("GET", "/_sandbox/status")["production"]
            wait_until(lambda: store.decisions_for(first), 300, what="the first deployment")
            out = drills.daemon_kill_drill(topo, store, rounds=1)
            assert out["deployments_seen"] == out["deployments_created"] == 5
            assert out["deployments_benchmarked"] == 5 and not out["lost"]
            assert out["runs_per_deployment_max"] == 1 and not out["duplicated"]
            assert out["rollbacks_issued"] == out["rolled_back_decisions"]
            assert out["rollbacks_per_deployment_max"] <= 1
            # The runs of one deployment, as the UI lists them.
            runs = drills.runs_for(topo, first)
            assert [r["status"] for r in runs] == ["SUCCESS"]
        finally:
            if store:
                store.dispose()
            topo.stop_all()
