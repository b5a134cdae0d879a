# w2sd.check_stored re-runs a stored run from its own recorded config and flags any metric that moved.
import json

from w2sd import check_stored
from w2sd.runner import run_experiment

SMALL = ["experiment=toy_gmm", "num_samples=200", "diagnostic_samples=100", "sampler.T=10", "figures=false",
         "logger=none"]


def test_a_stored_run_rechecks_identical_and_a_changed_metric_is_flagged(compose_config, tmp_path, capsys) -> None:
    run_experiment(compose_config(SMALL), tmp_path)
    assert check_stored.check(tmp_path) == ([], [])
    stored = json.loads((tmp_path / "results.json").read_text())
    stored["metrics"]["w2sd"]["w1"] *= 1 + 1e-15  # last-bits noise of a float reduction: rounding
    stored["metrics"]["strong"]["nll"] += 1e-6
    stored["nfe"]["w2sd"] = 27
    (tmp_path / "results.json").write_text(json.dumps(stored))
    core, extra = check_stored.check(tmp_path)
    assert extra == []
    assert [d.split(":")[0] for d in core] == [".metrics.strong.nll", ".metrics.w2sd.w1", ".nfe.w2sd"]
    assert core[1].endswith("(rounding)") and not core[0].endswith("(rounding)")
    assert check_stored.main([str(tmp_path)]) == 1
    assert "metrics and NFE DIFFERENT" in capsys.readouterr().out
