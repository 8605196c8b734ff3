"""The sandbox's experiments extension: config, results that grow with the clock, the split hook."""

import httpx

from atge_assets.abtest.analysis import analyze
from atge_assets.abtest.config import DEFAULT_EXPERIMENT, default_config
from atge_assets.sandbox.experiments import Experiments
from atge_assets.sandbox.server import SandboxServer
from atge_assets.sandbox.state import SandboxState
from atge_assets_tests.conftest import TOKEN

RATES = {"gpt51-high": 0.5, "gpt51-medium": 0.6}


def _url(sandbox, path=""):
    return f"{sandbox.base_url}/_sandbox/experiments{path}"


def test_lists_the_demo_experiment_with_its_config_and_truth(sandbox):
    [exp] = httpx.get(_url(sandbox)).json()["experiments"]
    assert exp["key"] == DEFAULT_EXPERIMENT and exp["status"] == "running"
    assert exp["config"] == default_config().to_dict()
    assert exp["split"] == {"gpt51-high": 80.0, "gpt51-medium": 20.0}
    assert exp["true_win_rates"]["gpt51-medium"] > exp["true_win_rates"]["gpt51-high"]
    assert exp["signals"] >= 1200  # backfilled, so the first analysis has data


def test_results_are_served_up_to_now_and_since(sandbox):
    r = httpx.post(_url(sandbox), json={"key": "e1", "true_win_rates": RATES, "seed": 5,
                                        "signals_per_minute": 600, "backfill_minutes": 2})
    assert r.status_code == 201 and r.json()["signals"] == 1200
    rows = httpx.get(_url(sandbox, "/e1/results")).json()["rows"]
    assert len(rows) >= 1200 and rows[0]["signal_id"] == "e1-r0-0000000"
    assert all(a["timestamp"] < b["timestamp"] for a, b in zip(rows, rows[1:]))
    assert set(rows[0]) == {"experiment", "variant_id", "signal_id", "analysis_time",
                            "confidence", "outcome", "profit_loss", "timestamp"}
    since = rows[700]["timestamp"]
    later = httpx.get(_url(sandbox, "/e1/results"), params={"since": since}).json()["rows"]
    assert later[:len(rows) - 700] == rows[700:]  # the same rows again: deterministic
    page = httpx.get(_url(sandbox, "/e1/results"), params={"limit": 600}).json()
    assert page["more"] and page["rows"] == rows[:600]


def test_rows_grow_with_the_clock_and_stop_when_the_split_changes(tmp_path):
    exps = Experiments(tmp_path / "experiments.json")
    exps.create({"key": "e2", "true_win_rates": RATES, "signals_per_minute": 60}, now=1000.0)
    assert exps.results("e2", None, 10_000, now=1000.0)["rows"] == []
    early = exps.results("e2", None, 10_000, now=1000.0 + 600)["rows"]
    late = exps.results("e2", None, 10_000, now=1000.0 + 1800)["rows"]
    assert len(early) == 600 and len(late) == 1800 and late[:600] == early
    assert late[-1]["timestamp"] == 2800.0
    out = exps.set_split("e2", {"split": {"gpt51-medium": 100}, "winner": "gpt51-medium"},
                         now=1000.0 + 1800.5)
    assert out["split"] == {"gpt51-high": 0.0, "gpt51-medium": 100.0} and out["status"] == "ended"
    assert len(exps.results("e2", None, 10_000, now=99_999.0)["rows"]) == 1800
    # A new process, the same file: the same experiment, split and rows.
    again = Experiments(tmp_path / "experiments.json")
    assert again.describe("e2")["splits"][0]["winner"] == "gpt51-medium"
    assert again.results("e2", None, 10_000, now=99_999.0)["rows"] == late


def test_the_true_effect_shows_in_the_analysis(tmp_path):
    exps = Experiments(None)
    exps.create({"key": "e3", "true_win_rates": {"gpt51-high": 0.5, "gpt51-medium": 0.65},
                 "signals_per_minute": 600, "seed": 2}, now=0.0)
    rows = exps.results("e3", None, 50_000, now=600.0)["rows"]
    result = analyze(rows, default_config("e3"))
    assert result["winner"] == "gpt51-medium"
    assert abs(result["srm"]["observed"]["gpt51-medium"] / len(rows) - 0.2) < 0.03


def test_split_hook_validates_records_and_survives_a_restart(sandbox, tmp_path):
    httpx.post(_url(sandbox), json={"key": "e4", "true_win_rates": RATES}).raise_for_status()
    bad = [{"split": {"gpt51-medium": 90}}, {"split": {"gpt99": 100}}, {"split": "all"}, {}]
    for body in bad:
        assert httpx.post(_url(sandbox, "/e4/split"), json=body).status_code == 400
    r = httpx.post(_url(sandbox, "/e4/split"), json={"split": {"gpt51-high": 50,
                                                               "gpt51-medium": 50},
                                                     "reason": "ramp", "run_id": "r1"})
    assert r.status_code == 200
    assert r.json()["previous"] == {"gpt51-high": 80.0, "gpt51-medium": 20.0}
    restarted = SandboxServer(("127.0.0.1", 0), SandboxState(tmp_path / "sandbox.json"),
                              token=TOKEN)
    restarted.start_background()
    try:
        exp = httpx.get(_url(restarted, "/e4")).json()
        assert exp["split"] == {"gpt51-high": 50.0, "gpt51-medium": 50.0}
        assert [s["reason"] for s in exp["splits"]] == ["ramp"] and exp["status"] == "ended"
    finally:
        restarted.shutdown()
        restarted.server_close()


def test_bad_requests_are_refused_clearly(sandbox):
    cases = [({"key": "bad key!", "true_win_rates": 0.5}, "key must be"),
             ({"key": "x"}, "true_win_rates is required"),
             ({"key": "x", "true_win_rates": {"gpt51-high": 0.5}}, "no value for variant"),
             ({"key": "x", "true_win_rates": 0.5, "signals_per_minute": None}, "bad request"),
             ({"key": "x", "true_win_rates": 0.5, "variants": [{"id": "a"}]}, "name must be")]
    for body, message in cases:
        r = httpx.post(_url(sandbox), json=body)
        assert r.status_code == 400 and message in r.json()["error"]["message"], (body, r.text)
    assert httpx.get(_url(sandbox, "/nope/results")).status_code == 404
    assert httpx.get(f"{sandbox.base_url}/_sandbox/status").status_code == 200  # core untouched
