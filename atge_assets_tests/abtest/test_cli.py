"""`atge abtest`: analyze, assign, bad input."""

from __future__ import annotations

import io
import json

from atge_assets.abtest.cli import cli_assign, cli_main
from atge_assets.abtest.config import (
    DEFAULT_EXPERIMENT,
    default_config,
)
from atge_assets.abtest.intake import (
    write_results_csv,
)
from atge_assets.abtest.simulate import simulate_results
from atge_assets_tests.abtest.helpers import HIGH, MEDIUM, variant


# --- CLI and store --------------------------------------------------------------------------------
def test_cli_analyze_json_last_line(tmp_path):
    config = default_config()
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as f:
        write_results_csv(simulate_results(config, 4000, {HIGH: 0.55, MEDIUM: 0.65},
                                                 seed=11), f)
        f.write(",gpt51-high,bad1,x,0.5,win,1,1767225600\n")
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["analyze", "--results", str(path), "--json"], out=out, err=err) == 0
    result = json.loads(out.getvalue().splitlines()[-1])
    assert result["winner"] == MEDIUM and result["variants"][MEDIUM]["win_rate"] > 0.6
    assert "line 4002: analysis_time 'x' is not a number" in err.getvalue()
    out = io.StringIO()
    assert cli_main(["analyze", "--results", str(path)], out=out, err=io.StringIO()) == 0
    assert "WINNER gpt51-medium" in out.getvalue()


def test_cli_bad_input_exits_2(tmp_path):
    bad_variants = tmp_path / "v.json"
    bad_variants.write_text(json.dumps({"variants": [variant("a", 70), variant("b", 20)]}))
    results = tmp_path / "r.csv"
    results.write_text("variant_id,signal_id\n")
    for argv, message in (
        (["analyze", "--results", str(tmp_path / "nope.csv")], "cannot read results file"),
        (["analyze", "--results", str(results)], "missing column"),
        (["analyze", "--results", str(results), "--variants", str(bad_variants)], "sums to 90"),
        (["assign", "--experiment", "e", "--user", "u", "--variants", str(bad_variants)],
         "sums to 90"),
        (["assign", "--user", "u"], "--experiment"),
        (["frobnicate"], "invalid choice"),
    ):
        err = io.StringIO()
        assert cli_main(argv, out=io.StringIO(), err=err) == 2, argv
        assert message in err.getvalue(), (argv, err.getvalue())


def test_cli_assign(tmp_path):
    out = io.StringIO()
    assert cli_assign(["--experiment", DEFAULT_EXPERIMENT, "--user", "user-2"], out=out) == 0
    assert out.getvalue().strip() == MEDIUM
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"experiment": "foo", "variants": [variant("a", 50),
                                                                  variant("b", 50)]}))
    out = io.StringIO()
    assert cli_main(["assign", "--experiment", "foo", "--user", "1", "--variants", str(path),
                        "--json"], out=out) == 0
    assert json.loads(out.getvalue())["variant_id"] == "b"
    err = io.StringIO()
    assert cli_main(["assign", "--experiment", "bar", "--user", "1", "--variants", str(path)],
                       out=io.StringIO(), err=err) == 2
    assert "differs" in err.getvalue()
