"""The sandbox's simulated metrics: scenarios over time, actions that change them, persistence,
and the Prometheus query_range subset with Prometheus's own error answers."""

import math
import statistics

import httpx
import pytest

from atge_assets.sandbox.server import SandboxServer
from atge_assets.sandbox.state import SandboxState
from atge_assets_tests.monitoring.helpers import sandbox, shared_sandbox  # noqa: F401

T = 1_790_000_000.0  # an explicit clock: scenarios and queries pinned to it never wait


def post(sandbox, path, body):
    return httpx.post(sandbox.base_url + path, json=body, timeout=10)


def cpu(sandbox, start, end, step=60, query='atge_cpu_percent{target="production"}'):
    r = httpx.get(sandbox.base_url + "/api/v1/query_range", timeout=10,
                  params={"query": query, "start": start, "end": end, "step": step})
    assert r.status_code == 200, r.text
    return r.json()


def values(answer):
    [series] = answer["data"]["result"]
    return [float(v) for _, v in series["values"]]


def test_ramp_has_history_and_prometheus_shape(sandbox):
    r = post(sandbox, "/_sandbox/metrics/scenario",
             {"metric": "cpu", "kind": "ramp", "base": 50, "slope_per_min": 0.5, "noise": 0,
              "start": T - 1800})
    assert r.status_code == 201 and r.json()["start"] == T - 1800
    answer = cpu(sandbox, T - 3600, T, 60)
    assert answer["status"] == "success" and answer["data"]["resultType"] == "matrix"
    [series] = answer["data"]["result"]
    assert series["metric"] == {"__name__": "atge_cpu_percent", "target": "production",
                                "job": "atge-sandbox"}
    assert all(isinstance(v, str) for _, v in series["values"])  # Prometheus sends strings
    v = values(answer)
    assert len(v) == 61
    assert v[:31] == [50.0] * 31  # flat before the ramp began, ...
    assert v[-1] == 65.0  # ... then +0.5 a minute for 30 minutes
    # One timestamp, one value: asking again, or for a narrower window, changes nothing.
    assert values(cpu(sandbox, T - 600, T, 60)) == v[-11:]


def test_speed_runs_the_scenario_clock_faster(sandbox):
    post(sandbox, "/_sandbox/metrics/scenario", {"metric": "cpu", "kind": "ramp", "base": 40,
                                                 "slope_per_min": 1, "noise": 0, "start": T,
                                                 "speed": 10})
    assert values(cpu(sandbox, T, T + 60, 60)) == [40.0, 50.0]


def test_spike_and_flat_shapes(sandbox):
    post(sandbox, "/_sandbox/metrics/scenario", {"metric": "cpu", "kind": "spike", "base": 50,
                                                 "noise": 1, "spike_p": 0.1, "spike_height": 40,
                                                 "start": T - 86400})
    v = values(cpu(sandbox, T - 6 * 3600, T, 60))
    spikes = [x for x in v if x > 70]
    assert 0.05 < len(spikes) / len(v) < 0.15
    assert abs(statistics.median(v) - 50) < 1
    post(sandbox, "/_sandbox/metrics/scenario", {"metric": "cpu", "kind": "flat", "base": 30,
                                                 "noise": 2, "start": T - 86400})
    v = values(cpu(sandbox, T - 6 * 3600, T, 60))
    assert max(v) < 30 + 5 * 2 and min(v) > 30 - 5 * 2
    assert 1.5 < statistics.stdev(v) < 2.5


def test_actions_change_the_metrics_from_when_they_are_taken(sandbox):
    import time

    now = time.time()
    for metric, base in (("cpu", 40), ("memory", 50), ("response_time_p95", 400)):
        post(sandbox, "/_sandbox/metrics/scenario",
             {"metric": metric, "kind": "ramp", "base": base, "slope_per_min": 1, "noise": 0,
              "ago_s": 1200})

    def at(t):
        return httpx.get(sandbox.base_url + "/_sandbox/metrics", params={"at": t}).json()

    before = at(now + 60)
    assert before["metrics"]["cpu"] > 60 and before["replicas"] == 1
    scaled = post(sandbox, "/_sandbox/metrics/actions",
                  {"action": "scale", "factor": 2, "metric": "cpu", "reason": "test"}).json()
    assert scaled["replicas"] == 2 and scaled["replicas_before"] == 1
    assert post(sandbox, "/_sandbox/metrics/actions", {"action": "restart"}).status_code == 201
    assert post(sandbox, "/_sandbox/metrics/actions", {"action": "clear_cache"}).status_code == 201
    after = at(now + 60)
    # Scaling halves cpu's growth; a restart starts the memory leak over; clearing the cache
    # starts response time over (and it is divided by the replicas too).
    assert after["metrics"]["cpu"] - 40 == pytest.approx((before["metrics"]["cpu"] - 40) / 2,
                                                         abs=1e-3)
    assert after["metrics"]["memory"] < 52 < before["metrics"]["memory"]
    assert after["metrics"]["response_time_p95"] < 401
    # The past is not rewritten.
    assert at(now - 60)["metrics"] == httpx.get(sandbox.base_url + "/_sandbox/metrics",
                                                params={"at": now - 60}).json()["metrics"]
    assert at(now - 60)["metrics"]["cpu"] > 55
    actions = httpx.get(sandbox.base_url + "/_sandbox/metrics/actions").json()["actions"]
    assert [a["action"] for a in actions] == ["scale", "restart", "clear_cache"]
    assert actions[0]["reason"] == "test" and actions[0]["metric"] == "cpu"


def test_scaling_stops_at_the_maximum(sandbox):
    body = {"action": "scale", "factor": 3, "max_replicas": 4}
    assert post(sandbox, "/_sandbox/metrics/actions", body).json()["replicas"] == 3
    assert post(sandbox, "/_sandbox/metrics/actions", body).json()["replicas"] == 4
    r = post(sandbox, "/_sandbox/metrics/actions", body)
    assert r.status_code == 409 and "maximum" in r.json()["error"]


def test_state_survives_a_restart(sandbox):
    post(sandbox, "/_sandbox/metrics/scenario", {"metric": "memory", "kind": "ramp",
                                                 "start": T - 600})
    post(sandbox, "/_sandbox/metrics/actions", {"action": "scale"})
    q = 'atge_memory_percent{target="production"}'
    first = values(cpu(sandbox, T - 600, T, 60, q))
    folder = sandbox.state.path.parent
    assert (folder / "metrics.json").exists()  # beside the sandbox's own state file
    again = SandboxServer(("127.0.0.1", 0), SandboxState(sandbox.state.path))
    again.start_background()
    try:
        assert values(cpu(again, T - 600, T, 60, q)) == first
        acts = httpx.get(again.base_url + "/_sandbox/metrics/actions").json()["actions"]
        assert [a["replicas"] for a in acts] == [2]
    finally:
        again.shutdown()
        again.server_close()


def test_a_damaged_state_file_starts_healthy(tmp_path):
    from atge_assets.sandbox.metrics import MetricsSim

    (tmp_path / "metrics.json").write_text('{"scenarios": ')
    sim = MetricsSim(tmp_path / "metrics.json")
    assert sim.scenarios == {} and sim.actions == []


def test_per_deployment_targets_and_label_matching(sandbox):
    dep = sandbox.state.world.production
    post(sandbox, "/_sandbox/metrics/scenario", {"metric": "cpu", "kind": "flat", "base": 10,
                                                 "noise": 0, "target": dep})
    both = cpu(sandbox, T, T, 60, "atge_cpu_percent")["data"]["result"]
    assert sorted(s["metric"]["target"] for s in both) == sorted([dep, "production"])
    assert values(cpu(sandbox, T, T, 60, f'atge_cpu_percent{{target="{dep}"}}')) == [10.0]
    assert cpu(sandbox, T, T, 60, "atge_no_such_metric")["data"]["result"] == []
    r = post(sandbox, "/_sandbox/metrics/scenario", {"metric": "cpu", "target": "dpl_nope"})
    assert r.status_code == 400 and "target" in r.json()["error"]["message"]


def test_bad_scenarios_and_actions_are_refused_with_the_reason(sandbox):
    for body, word in (({"metric": "disk", "kind": "ramp"}, "metric must be one of"),
                       ({"metric": "cpu", "kind": "zigzag"}, "kind must be one of"),
                       ({"metric": "cpu", "noise": "loud"}, "noise must be a number"),
                       ({"metric": "cpu", "spike_p": 2}, "spike_p must be between")):
        r = post(sandbox, "/_sandbox/metrics/scenario", body)
        assert r.status_code == 400 and word in r.json()["error"]["message"], (body, r.text)
    r = post(sandbox, "/_sandbox/metrics/actions", {"action": "reboot_the_world"})
    assert r.status_code == 400 and "action must be one of" in r.json()["error"]["message"]


def test_query_range_errors_are_prometheus_errors(sandbox):
    url = sandbox.base_url + "/api/v1/query_range"
    for params, word in (
        ({"query": "atge_cpu_percent", "start": T, "end": T - 60, "step": 60}, "before start"),
        ({"query": "atge_cpu_percent", "start": T, "end": T, "step": 0}, "positive"),
        ({"query": "atge_cpu_percent", "start": 0, "end": T, "step": 1}, "11,000 points"),
        ({"query": "atge_cpu_percent", "start": "yesterday", "end": T, "step": 60}, "start"),
        ({"query": "rate(atge_cpu_percent[5m])", "start": T, "end": T, "step": 60}, "selectors"),
        ({"query": 'atge_cpu_percent{target=~"prod.*"}', "start": T, "end": T, "step": 60},
         "label matcher"),
    ):
        r = httpx.get(url, params=params)
        body = r.json()
        assert r.status_code == 400 and body["status"] == "error", params
        assert body["errorType"] == "bad_data" and word in body["error"], (params, body)
    # Durations are accepted as Prometheus writes them.
    ok = httpx.get(url, params={"query": "atge_cpu_percent", "start": T - 120, "end": T,
                                "step": "1m"}).json()
    assert len(ok["data"]["result"][0]["values"]) == 3


def test_reset_forgets_scenarios_and_actions(sandbox):
    post(sandbox, "/_sandbox/metrics/scenario", {"metric": "cpu", "kind": "ramp"})
    post(sandbox, "/_sandbox/metrics/actions", {"action": "restart"})
    assert post(sandbox, "/_sandbox/metrics/reset", {}).status_code == 200
    snap = httpx.get(sandbox.base_url + "/_sandbox/metrics").json()
    assert snap["scenarios"] == {} and snap["replicas"] == 1
    assert httpx.get(sandbox.base_url + "/_sandbox/metrics/actions").json()["actions"] == []


def test_a_scenario_begun_minutes_ago_ramps_from_then(sandbox):
    """What `atge sandbox metrics --scenario cpu=ramp --ago-minutes 40` sends: the history from
    40 minutes before it was set is a ramp from the base, not the base with a step at the end."""
    r = post(sandbox, "/_sandbox/metrics/scenario",
             {"metric": "cpu", "kind": "ramp", "noise": 0, "ago_s": 2400})
    sc = r.json()
    assert sc["start"] == pytest.approx(sc["set_at"] - 2400)
    start = math.floor(sc["start"] / 60) * 60 + 60
    v = values(cpu(sandbox, start - 600, start + 2340, 60))
    assert v[:10] == [45.0] * 10  # healthy before it began
    ramp = v[10:]
    assert all(b > a for a, b in zip(ramp, ramp[1:]))  # then rising every minute ...
    assert ramp[-1] == pytest.approx(45 + 35 / 45 * (start + 2340 - sc["start"]) / 60, abs=1e-3)
