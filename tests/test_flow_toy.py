# The flow toy (experiment=toy_gmm_flow[_2d]): exact velocities on the FlowMatchEuler grid through the toy runner.
import pytest

from toy.experiment import ToyGMMExperiment
from toy.metrics import mode_weights
from w2sd.methods import run_method
from w2sd.runner import build_experiment, run_experiment
from w2sd.schedule import FlowSchedule, make_flow_schedule
from w2sd.validation import ConfigError


def test_flow_toy_composes_the_flow_grid_with_the_toy_methods(compose_config) -> None:
    cfg = compose_config(["experiment=toy_gmm_flow"])
    exp = ToyGMMExperiment(cfg)
    exp.validate()
    assert isinstance(exp.schedule, FlowSchedule)
    assert exp.schedule.sigmas == make_flow_schedule(50, shift=1.0).sigmas and exp.schedule.num_steps == 50
    assert exp.sampler_cfg["lam"] == 49
    assert list(exp.methods) == list(compose_config(["experiment=toy_gmm"]).methods)


def test_flow_toy_strong_model_reproduces_its_mixture_and_w2sd_moves_the_left_mode(compose_config) -> None:
    """Euler on exact velocities integrates the probability-flow ODE of the strong mixture: its left share is 0.45
    up to sampling and discretisation error; the reflection (weak gap 4 × the strong gap) pushes it past ½ but not
    beyond the first-order 0.45 + 0.2 = 0.65."""
    cfg = compose_config(["experiment=toy_gmm_flow", "num_samples=4000"])
    exp = ToyGMMExperiment(cfg)
    exp.validate()
    models, _ = exp.build_models(exp.schedule)
    share = {}
    for name in ("strong", "w2sd", "s2wd"):
        x_T, gens = exp.initial_noise(cfg.num_samples)
        x = run_method(exp.methods[name], models, x_T, exp.schedule, generators=gens).x
        share[name] = float(mode_weights(x, exp.mixtures["ideal"])[0])
    assert abs(share["strong"] - 0.45) < 0.025  # binomial SE 0.008
    assert 0.55 < share["w2sd"] < 0.70
    assert share["s2wd"] < share["strong"] - 0.1


def test_flow_toy_2d_runs_end_to_end_with_the_toy_metrics(compose_config, tmp_path) -> None:
    cfg = compose_config(["experiment=toy_gmm_flow_2d", "logger=none", "num_samples=400", "diagnostic_samples=100",
                          "num_trajectories=5", "trajectory_steps=5", "figures=false"])
    res = run_experiment(cfg, tmp_path)
    assert res["config"]["sampler"]["schedule"]["kind"] == "flow"
    assert list(res["metrics"]["w2sd"])[0] == "target_mode_weight"
    assert res["nfe"] == {"ideal": 50, "weak": 50, "strong": 50, "w2sd": 148, "s2wd": 148, "autoguidance": 100,
                          "resampling": 99}
    assert res["metrics"]["w2sd"]["target_mode_weight"] > res["metrics"]["strong"]["target_mode_weight"]


@pytest.mark.parametrize("overrides,match", [
    (["model=trained"], "model=trained trains ε-prediction MLPs"),
    (["sampler.inversion=official"], "methods.w2sd.inversion='official'"),
    (["+sampler.schedule.beta_start=0.001"], r"option\(s\) \['beta_start'\] that a flow schedule does not take"),
    (["sampler.schedule.shift=-1"], "shift=-1"),
])
def test_flow_toy_bad_input_is_refused_before_any_work(compose_config, overrides, match) -> None:
    with pytest.raises(ConfigError, match=match):
        build_experiment(compose_config(["experiment=toy_gmm_flow", *overrides])).validate()


def test_vp_toy_config_is_unchanged_by_the_schedule_group(compose_config) -> None:
    """The sampler/schedule group composes the same VP schedule the stored toy results were made with."""
    import json
    from pathlib import Path

    stored = json.loads((Path(__file__).parent.parent / "results" / "toy_gmm" / "results.json").read_text())
    cfg = compose_config(["experiment=toy_gmm"])
    assert dict(cfg.sampler.schedule) == stored["config"]["sampler"]["schedule"]
