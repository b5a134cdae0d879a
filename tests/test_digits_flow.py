# The digits worlds under rectified flow: the velocity training objective, the flow adapter, the few-step study.
from pathlib import Path

import pytest
import torch

from experiments.digits import models as M
from experiments.digits.adapter import UNetEps
from experiments.digits.compute import few_step_methods
from experiments.digits.training import DiffusionModule, TrainingLevels, build_unet
from w2sd.schedule import make_flow_schedule
from w2sd.validation import ConfigError

FLOW = {"kind": "flow", "num_train_timesteps": 1000}


def tiny_flow_spec() -> dict:
    data = {"world": "digits", "counts": [[0, 12], [7, 6]], "split": {"test_fraction": 0.2, "seed": 0}}
    return {"data": data, "net": {"dims": 2, "channels": [8, 16], "emb_dim": 16, "num_classes": 10},
            "schedule": FLOW, "batch_size": 8, "lr": 0.001, "ema_decay": 0.999, "cond_dropout": 0.0, "seed": 0}


def test_flow_levels_are_the_flow_match_training_grid() -> None:
    """σ_t = (t + 1)/N on x = (1 − σ)x₀ + σε, timestep σ·N as FlowMatchEulerDiscreteScheduler's training table."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    levels = TrainingLevels.of(FLOW)
    table = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)  # shift 1: sigmas = timesteps / N, descending
    assert torch.allclose(levels.sigma.flip(0), table.sigmas, atol=1e-7)
    assert torch.allclose(levels.timesteps.flip(0).float(), table.timesteps, atol=1e-3)
    assert torch.allclose(levels.alpha + levels.sigma, torch.ones(1000)) and levels.prediction == "velocity"


def test_flow_training_step_regresses_the_velocity_at_the_noised_point() -> None:
    """The loss is ‖net(x_σ, σ, y) − (ε − x₀)‖² with x_σ = (1 − σ)x₀ + σε: reproduced here from the same draws."""
    torch.manual_seed(0)
    net = build_unet(tiny_flow_spec())
    module = DiffusionModule(net, TrainingLevels.of(FLOW), 0.001, 0.0, 0.999)
    x0, labels = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4])
    torch.manual_seed(7)
    loss = module.training_step((x0, labels), 0)
    torch.manual_seed(7)
    t = torch.randint(0, 1000, (5,))
    eps = torch.randn_like(x0)
    torch.rand(labels.shape)  # the label-dropout draw
    sigma = ((t + 1) / 1000).float().view(-1, 1, 1, 1)
    expected = ((net((1 - sigma) * x0 + sigma * eps, (t + 1) / 1000, labels) - (eps - x0)) ** 2).mean()
    assert torch.allclose(loss, expected, atol=1e-6)


def test_flow_adapter_clamps_x0_in_the_velocity_parameterisation() -> None:
    """With clip_x0 the returned v satisfies x − σ·v = clamp(x − σ·v_raw, −1, 1) at the queried level, and the net
    sees σ as its time input (t / N with t = σ·N)."""
    torch.manual_seed(0)
    net = build_unet(tiny_flow_spec()).eval()
    schedule = make_flow_schedule(10)
    x, labels = 3 * torch.randn(4, 1, 8, 8), torch.tensor([0, 3, 7, 9])
    t = schedule.timesteps[4]
    sigma = t / 1000
    raw = UNetEps(net, schedule, labels, 1.0, clip_x0=False)(x, t)
    clipped = UNetEps(net, schedule, labels, 1.0, clip_x0=True)(x, t)
    assert torch.allclose(raw, net(x, torch.full((4,), sigma), labels), atol=1e-6)
    assert torch.allclose(x - sigma * clipped, (x - sigma * raw).clamp(-1, 1), atol=1e-5)
    assert ((x - sigma * raw).abs() > 1).any()


def test_flow_specs_name_the_objective_and_vp_specs_are_unchanged(compose_config) -> None:
    vp = compose_config(["experiment=digits_frontier_dataset_gap"])
    flow = compose_config(["experiment=digits_frontier_dataset_gap_flow"])
    assert M.dataset_gap_snapshots(vp)["strong"].spec["schedule"] == {
        "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, "num_train_timesteps": 1000}
    flow_spec, vp_spec = M.dataset_gap_snapshots(flow)["strong"].spec, M.dataset_gap_snapshots(vp)["strong"].spec
    assert flow_spec["schedule"] == FLOW
    assert {k: v for k, v in flow_spec.items() if k != "schedule"} == {k: v for k, v in vp_spec.items()
                                                                       if k != "schedule"}  # same data, net, budget


def test_few_step_methods_match_w2sd_nfe_at_every_t() -> None:
    methods, pairs, tune_steps = few_step_methods([4, 50])
    assert methods["w2sd_T4"] == {"sampler": "w2sd", "lam": 3, "T": 4}
    assert methods["ddim_matched_T4"]["T"] == 10 and methods["guidance_matched_T4"]["T"] == 5
    assert methods["ddim_matched_T50"]["T"] == 148 and methods["guidance_matched_T50"]["T"] == 74
    assert tune_steps == {"guidance_matched_T4": 5, "guidance_matched_T50": 74}
    assert ("w2sd_T50", "guidance_matched_T50") in pairs and ("guidance_matched_T4", "strong_T4") in pairs
    with pytest.raises(ConfigError, match="entry 5 is odd"):
        few_step_methods([4, 5])


def test_few_step_study_tunes_guidance_at_each_step_count(compose_config, tmp_path: Path) -> None:
    from w2sd.runner import run_experiment

    cfg = compose_config(["experiment=digits_few_step_dataset_gap", "logger=none", "seeds=[0]", "samples_per_seed=6",
                          "few_step.steps=[2,4]", "tune.seeds=[100]", "tune.grid=[0.5,3.0]"])
    results = run_experiment(cfg, tmp_path)
    nfe = results["nfe"]
    for T in (2, 4):
        assert nfe[f"w2sd_T{T}"] == nfe[f"ddim_matched_T{T}"] == nfe[f"guidance_matched_T{T}"] == 3 * T - 2
        assert nfe[f"strong_T{T}"] == T
    groups = results["extra"]["tuning"]["groups"]
    assert [(g["T"], g["methods"]) for g in groups] == [(2, ["guidance_matched_T2"]), (5, ["guidance_matched_T4"])]
    for g in groups:
        scores = dict((w, s) for w, s in g["scores"])
        assert g["w"] == min(scores, key=scores.get)
        assert results["extra"]["method_options"][g["methods"][0]]["w"] == g["w"]


def test_few_step_and_frontier_blocks_are_refused_together(compose_config) -> None:
    from w2sd.runner import build_experiment

    cfg = compose_config(["experiment=digits_few_step_dataset_gap", "+frontier={lams:[1],windows:[first]}"])
    with pytest.raises(ConfigError, match="few_step and frontier are separate studies"):
        build_experiment(cfg).validate()


FLOW_STUDIES = ("digits_frontier_dataset_gap_flow", "digits_frontier_weight_gap_flow", "digits_cfg_sweep_flow",
                "digits_few_step_dataset_gap_flow", "digits_few_step_weight_gap_flow")
VP_TWINS = ("digits_few_step_dataset_gap", "digits_few_step_weight_gap")


@pytest.mark.parametrize("name", FLOW_STUDIES + VP_TWINS)
def test_stored_flow_and_few_step_studies_keep_their_budgets_and_name_their_nets(name: str) -> None:
    """5 seeds with paired CIs; the flow studies name committed nets whose spec trains the velocity objective and are
    sampled on the flow grid, their VP twins the ε-nets."""
    from experiments.digits.checkpoints import read_checkpoint
    from w2sd.results import load_results

    res = load_results(Path(__file__).parent.parent / "results" / name / "results.json")
    assert res["config"]["seeds"] == [0, 1, 2, 3, 4] and res["extra"]["num_seeds"] == 5
    assert all(c["n"] == 5 and c["ci_low"] <= c["mean"] <= c["ci_high"]
               for pair in res["extra"]["comparisons"].values() for c in pair.values())
    flow = name.endswith("_flow")
    assert (res["config"]["sampler"]["schedule"].get("kind") == "flow") == flow
    for net in res["extra"]["nets"].values():
        spec = read_checkpoint(M.COMMITTED_DIR / net["checkpoint"])["spec"]
        assert (spec["schedule"] == FLOW) == flow


def test_study_metrics_do_not_depend_on_the_sampling_thread_count(compose_config, tmp_path: Path) -> None:
    """The flow and few-step studies sample on two threads (their configs); their stored metrics must be those of
    one thread, bit for bit, or the thread count would be a hidden part of every number."""
    from w2sd.runner import run_experiment

    metrics = []
    for threads in (1, 2):
        cfg = compose_config(["experiment=digits_few_step_weight_gap_flow", "logger=none", "seeds=[0]",
                              "samples_per_seed=20", "few_step.steps=[4]", "tune.seeds=[100]", "tune.grid=[0.5,2.0]",
                              f"digits.torch_threads={threads}"])
        assert cfg.digits.torch_threads == threads
        metrics.append(run_experiment(cfg, tmp_path / str(threads))["metrics"])
    assert metrics[0] == metrics[1]
