"""Reading metrics: Prometheus's query_range against the sandbox's, the target's JSON endpoint, the
allow-list, and clear errors for every kind of malformed answer."""

import httpx
import pytest

from atge_assets.lib.http import HostNotAllowed
from atge_assets.monitoring.metrics_source import (
    JsonEndpointSource,
    MalformedAnswer,
    MetricsSourceError,
    PrometheusSource,
    default_queries,
    parse_query_range,
)
from atge_assets_tests.monitoring.helpers import sandbox, shared_sandbox  # noqa: F401

T = 1_790_000_040.0  # a multiple of 60
LOCAL = ["127.0.0.1"]


def scenario(sandbox, **body):
    r = httpx.post(sandbox.base_url + "/_sandbox/metrics/scenario", json=body)
    assert r.status_code == 201, r.text


def prom(url, **kw):
    return PrometheusSource(url, default_queries(), allowed_hosts=LOCAL, **kw)


def test_query_range_against_the_sandbox(sandbox):
    scenario(sandbox, metric="cpu", kind="ramp", base=50, slope_per_min=1, noise=0,
             start=T - 600)
    with prom(sandbox.base_url) as src:
        [(labels, pairs)] = src.query_range(default_queries()["cpu"], T - 900, T, 60)
    assert labels["target"] == "production" and labels["__name__"] == "atge_cpu_percent"
    assert [t for t, _ in pairs] == [T - 900 + 60 * k for k in range(16)]
    assert [v for _, v in pairs][-3:] == [58.0, 59.0, 60.0]


def test_collect_backfills_then_asks_only_for_what_is_new(sandbox):
    with prom(sandbox.base_url) as src:
        first = src.collect(["cpu", "memory"], T + 10, {}, 60, 3600)
        assert not first.errors
        # Samples on multiples of the step: the next intake's samples line up with these.
        cpu = [p for p in first.points if p.metric == "cpu"]
        assert len(cpu) == 60 and all(p.timestamp % 60 == 0 for p in cpu)
        since = {"cpu": cpu[-1].timestamp, "memory": None}
        later = src.collect(["cpu", "memory"], T + 130, since, 60, 3600)
        assert [p.timestamp for p in later.points if p.metric == "cpu"] == [T + 60, T + 120]
        assert len([p for p in later.points if p.metric == "memory"]) == 60
        # Nothing new yet: no query at all.
        assert src.collect(["cpu"], T + 130, {"cpu": T + 120}, 60, 3600).points == []
        # Revisiting the last 10 minutes: those are read again, however recent the last sample.
        again = src.collect(["cpu"], T + 130, {"cpu": T + 120}, 60, 3600, revisit_s=600)
        assert [p.timestamp for p in again.points] == [T + 60 * k for k in range(-7, 3)]


def test_one_series_per_query_or_a_clear_error(sandbox):
    dep = sandbox.state.world.production
    scenario(sandbox, metric="cpu", kind="flat", target=dep)  # now two targets have cpu
    with PrometheusSource(sandbox.base_url, {"cpu": "atge_cpu_percent",
                                             "memory": "atge_nothing_here"},
                          allowed_hosts=LOCAL) as src:
        got = src.collect(["cpu", "memory", "queue_depth"], T, {}, 60, 600)
    assert "returned 2 series" in got.errors["cpu"] and "aggregate" in got.errors["cpu"]
    assert got.errors["queue_depth"] == "no query configured for 'queue_depth'"
    assert got.empty == ["memory"] and got.points == []


def test_prometheus_error_answers_are_reported_with_their_reason(sandbox):
    with PrometheusSource(sandbox.base_url, {"cpu": "rate(atge_cpu_percent[5m])"},
                          allowed_hosts=LOCAL) as src:
        with pytest.raises(MetricsSourceError, match=r"bad_data: the sandbox answers plain"):
            src.query_range("rate(atge_cpu_percent[5m])", T - 60, T, 60)
        got = src.collect(["cpu"], T, {}, 60, 600)
    assert "prometheus at 127.0.0.1" in got.errors["cpu"]
    with prom(sandbox.base_url) as src, pytest.raises(ValueError, match="11000"):
        src.query_range("atge_cpu_percent", 0, T, 1)


def test_json_endpoint_of_the_target(sandbox):
    scenario(sandbox, metric="error_rate", kind="flat", base=2.5, noise=0)
    with JsonEndpointSource(sandbox.base_url + "/_sandbox/metrics", allowed_hosts=LOCAL) as src:
        got = src.collect(["cpu", "error_rate"], now=0.0)
    values = {p.metric: p for p in got.points}
    assert values["error_rate"].value == 2.5
    assert values["cpu"].timestamp > 1e9  # the target's own timestamp, not the caller's
    assert not got.errors and not got.empty


def test_only_allowed_hosts_are_called():
    for url in ("http://prometheus.internal:9090", "http://169.254.169.254/latest",
                "file:///etc/passwd"):
        with pytest.raises(HostNotAllowed):
            PrometheusSource(url, {}, allowed_hosts=["*.example.com", "169.254.169.254"])
    with pytest.raises(HostNotAllowed):
        JsonEndpointSource("https://atge.vercel.app/api/metrics", allowed_hosts=LOCAL)


# -- malformed answers ---------------------------------------------------------------------------

OK = {"status": "success", "data": {"resultType": "matrix", "result": [
    {"metric": {"__name__": "x"}, "values": [[T, "1.5"], [T + 60, "NaN"], [T + 120, "+Inf"]]}]}}


def test_parser_reads_values_and_drops_nan_and_infinity():
    [(labels, pairs)] = parse_query_range(OK)
    assert labels == {"__name__": "x"}
    assert pairs == [(T, 1.5), (T + 60, None), (T + 120, None)]


@pytest.mark.parametrize("payload, message", [
    ([1, 2], "a list, not a JSON object"),
    ({"status": "pending"}, "'status' is 'pending'"),
    ({"status": "success"}, "no 'data' object"),
    ({"status": "success", "data": {"resultType": "vector", "result": []}},
     "'vector', not 'matrix'"),
    ({"status": "success", "data": {"resultType": "matrix", "result": {}}},
     "'data.result' is not a list"),
    ({"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}}]}},
     r"data.result\[0\] needs a 'metric' object and a 'values' list"),
    ({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[T, "1"], [T]]}]}},
     r"data.result\[0\].values\[1\] is not a \[timestamp, value\] pair"),
    ({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[T, "high"]]}]}},
     r"values\[0\]\[1\]: 'high' is not a number"),
    ({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [["noon", "1"]]}]}},
     r"values\[0\]\[0\]: 'noon' is not a number"),
    ({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[T, True]]}]}}, "True is not a number"),
])
def test_malformed_query_range_answers_say_what_is_wrong(payload, message):
    with pytest.raises(MalformedAnswer, match=message):
        parse_query_range(payload, "atge_cpu_percent")


def answering(status, content, headers=None):
    def handler(request):
        if isinstance(content, Exception):
            raise content
        return httpx.Response(status, content=content, headers=headers or {})
    return httpx.MockTransport(handler)


@pytest.mark.parametrize("status, content, message", [
    (200, b"<html>login</html>", r"HTTP 200, not JSON: '<html>login</html>'"),
    (502, b"Bad Gateway", r"HTTP 502, not JSON"),
    (500, b'{"oops": 1}', r"HTTP 500$"),
    (422, b'{"status": "error", "errorType": "execution", "error": "too many samples"}',
     r"prometheus refused it: execution: too many samples"),
    (200, b"[" + b"1," * (5 << 20) + b"1]", r"larger than 8 MiB"),
    (200, httpx.ReadTimeout("slow"), r"query 'q': timed out"),
    (200, httpx.ConnectError("refused"), r"ConnectError: refused"),
])
def test_malformed_or_failed_http_answers_are_clear_errors(status, content, message):
    src = PrometheusSource("http://127.0.0.1:9", {"cpu": "q"}, allowed_hosts=LOCAL,
                           transport=answering(status, content))
    with pytest.raises(MetricsSourceError, match=message) as err:
        src.query_range("q", T - 60, T, 60)
    assert str(err.value).startswith("prometheus at 127.0.0.1:9")
    # In an intake, the failure is this metric's error, not an exception.
    assert "prometheus at 127.0.0.1:9" in src.collect(["cpu"], T, {}, 60, 600).errors["cpu"]


@pytest.mark.parametrize("body, message", [
    (b'{"cpu": 50}', "'metrics' object of numbers"),
    (b'{"metrics": {"cpu": 50}, "timestamp": "now"}', "'timestamp': 'now' is not a number"),
])
def test_malformed_json_endpoint_answers(body, message):
    src = JsonEndpointSource("http://127.0.0.1:9/metrics", allowed_hosts=LOCAL,
                             transport=answering(200, body))
    with pytest.raises(MalformedAnswer, match=message):
        src.collect(["cpu"], T)


def test_one_bad_json_value_spoils_only_its_metric():
    src = JsonEndpointSource("http://127.0.0.1:9/metrics", allowed_hosts=LOCAL,
                             transport=answering(200, b'{"metrics": {"cpu": "n/a", "memory": 61}}'))
    got = src.collect(["cpu", "memory", "queue_depth"], T)
    assert "'metrics.cpu': 'n/a' is not a number" in got.errors["cpu"]
    assert [(p.metric, p.value, p.timestamp) for p in got.points] == [("memory", 61.0, T)]
    assert got.empty == ["queue_depth"]


def test_the_token_goes_in_the_header_only():
    seen = {}

    def handler(request):
        seen["auth"] = request.headers.get("authorization")
        return httpx.Response(401, content=b"unauthorized")

    src = PrometheusSource("http://127.0.0.1:9", {}, allowed_hosts=LOCAL, token="s3cr3t-tok",
                           transport=httpx.MockTransport(handler))
    with pytest.raises(MetricsSourceError) as err:
        src.query_range("q", T - 60, T, 60)
    assert seen["auth"] == "Bearer s3cr3t-tok" and "s3cr3t" not in str(err.value)
