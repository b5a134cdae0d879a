# New samplers are compositions: a pre-step variant in a few lines, run by name through methods.py unchanged.
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import make_sampling_golden as golden  # noqa: E402

from w2sd import methods  # noqa: E402
from w2sd.ddim import ddim_transfer  # noqa: E402
from w2sd.sampling import (  # noqa: E402
    Callback,
    Denoiser,
    NFECounter,
    SampleOutput,
    ddim_loop,
    reflection,
    sample_w2sd,
)
from w2sd.schedule import DiscreteSchedule  # noqa: E402
from w2sd.validation import ConfigError  # noqa: E402


def sample_two_weak(strong: Denoiser, weak: Denoiser, weaker: Denoiser, x: torch.Tensor, schedule: DiscreteSchedule,
                    *, lam: int = 1, callback: Callback | None = None) -> SampleOutput:
    """A new variant: each reflected level is reflected off `weak`, then off `weaker`."""
    counter = NFECounter()
    s, w1, w2 = (counter.wrap(m) for m in (strong, weak, weaker))
    first, second = (reflection(s, w, schedule, range(lam)) for w in (w1, w2))
    return counter.output(ddim_loop(s, x, schedule, callback=callback,
                                    pre_step=lambda x, i: None if i >= lam else second(first(x, i), i)))


def test_a_new_pre_step_variant_needs_no_change_to_the_loop_or_methods(monkeypatch) -> None:
    models, x, schedule, _ = golden.build("1d", 10)
    ideal = golden.GaussianMixture.build([[-4.0], [4.0]], 0.87, [0.35, 0.65])
    models["weaker"] = golden.ExactDenoiser(ideal, schedule)
    monkeypatch.setitem(methods.SAMPLERS, "two_weak", sample_two_weak)
    resolved = methods.resolve_method("twice", {"sampler": "two_weak"}, {"lam": 4, "order": "w2s"}, models, 10)
    assert resolved == {"sampler": "two_weak", "roles": {"strong": "strong", "weak": "weak", "weaker": "weaker"},
                        "options": {"lam": 4}}
    out = methods.run_method(resolved, models, x, schedule)
    expected = x  # the same loop written out by hand
    for i, t in enumerate(schedule.timesteps):
        a, a_next = schedule.level(i), schedule.level(i + 1)
        for inverter in (models["weak"], models["weaker"]) if i < 4 else ():
            x_adv = ddim_transfer(expected, models["strong"](expected, t), a, a_next)
            expected = ddim_transfer(x_adv, inverter(x_adv, t), a_next, a)
        expected = ddim_transfer(expected, models["strong"](expected, t), a, a_next)
    assert torch.allclose(out.x, expected, atol=1e-12, rtol=0) and out.nfe == 10 + 4 * 4
    # with weaker = weak it is W2SD with two reflections per step, bit for bit
    same = sample_two_weak(models["strong"], models["weak"], models["weak"], x, schedule, lam=4)
    assert torch.equal(same.x, sample_w2sd(models["strong"], models["weak"], x, schedule, lam=4,
                                           reflections_per_step=2).x)


def test_method_specs_resolve_as_main_resolved_the_stored_toy_study() -> None:
    """results/toy_gmm/results.json holds main's resolved methods; re-sampling now also records (and receives) the
    weak model the table names, which it calls only with alignment (same samples, same NFE)."""
    stored = json.loads((Path(__file__).parent.parent / "results" / "toy_gmm" / "results.json").read_text())
    sampler = methods.resolve_sampler_config(stored["config"]["sampler"])
    table = {name: name for name in ("ideal", "weak", "strong")}
    expected = stored["extra"]["resolved_methods"]
    expected["resampling"]["roles"]["weak"] = "weak"
    for name, spec in stored["config"]["methods"].items():
        got = methods.resolve_method(name, spec, methods.sampler_defaults(sampler), table, sampler["T"])
        assert got == expected[name] and list(got["options"]) == list(expected[name]["options"]), name


@pytest.mark.parametrize("spec, message", [
    ({"sampler": "w2sd", "lam_fraction": 0.5}, "method 'm': unknown option(s) ['lam_fraction'] for sampler 'w2sd'; "
     "it accepts ['lam', 'inversion', 'order', 'window', 'reflections_per_step', 'inversion_noise', 'threshold']"),
    ({"sampler": "autoguidance", "generators": 3}, "unknown option(s) ['generators'] for sampler 'autoguidance'; "
     "it accepts ['w']"),
    ({"sampler": "resampling", "alignment": "sideways"}, "methods.m.alignment='sideways' is not one of"),
    ({"sampler": "w2sd", "order": "x"}, "methods.m.order='x' is not one of"),
    ({"sampler": "w2sd", "final": "ema"}, "method 'm': final='ema' is not a model here; available models: "
     "['strong', 'weak']"),
    ({"sampler": "dpm"},
     "method 'm': sampler='dpm' is not one of ['advanced_guidance', 'autoguidance', 'ddim', 'resampling', 'w2sd']"),
    ({"sampler": "ddim"}, None),
    ({"sampler": "w2sd", "lam": 10}, "methods.m.lam=10 must be in [0, 9]; λ must be in [0, T−1]"),
    ({}, "method 'm': sampler=None is not one of"),
])
def test_spec_checks_come_from_the_signature(spec: dict, message: str | None) -> None:
    table = {"strong": "strong", "weak": "weak"}
    if message is None:
        assert methods.resolve_method("m", spec, {"lam": 3, "w": 2.0}, table, 10) == {
            "sampler": "ddim", "roles": {"model": "strong"}, "options": {}}
        return
    with pytest.raises(ConfigError) as err:
        methods.resolve_method("m", spec, {}, table, 10)
    assert message in str(err.value)


def test_optional_models_are_filled_only_from_the_table() -> None:
    spec = {"sampler": "w2sd"}
    assert methods.resolve_method("m", spec, {}, {"strong": 0, "weak": 1})["roles"] == {"strong": "strong",
                                                                                          "weak": "weak"}
    assert methods.resolve_method("m", spec, {}, {"strong": 0, "weak": 1, "final": 2})["roles"]["final"] == "final"
    with pytest.raises(ConfigError, match="weak='weak' is not a model here"):
        methods.resolve_method("m", spec, {}, {"strong": 0})


def test_shared_sampler_group_is_checked_and_split() -> None:
    assert methods.resolve_sampler_config({"T": 2, "lam": None}) == {"T": 2, "lam": 1}
    assert methods.resolve_sampler_config({"T": 5, "lam": 0}) == {"T": 5, "lam": 0}
    for group, message in (({"T": 1, "lam": None}, "sampler.T=1 must be >= 2; W2SD needs at least two sampling steps"),
                           ({"T": 2, "lam": 2}, "sampler.lam=2 must be in [0, 1]; λ must be in [0, T−1]")):
        with pytest.raises(ConfigError) as err:
            methods.resolve_sampler_config(group)
        assert str(err.value) == message
    group = {"T": 5, "lam": 4, "inversion": "exact", "schedule": {"spacing": "trailing"}}
    assert methods.sampler_defaults(group) == {"lam": 4, "inversion": "exact"}


def test_run_method_hands_over_generators_and_callback() -> None:
    models, x, schedule, seeds = golden.build("1d", 10)
    resolved = methods.resolve_method("r", {"sampler": "resampling", "lam": 3}, {}, models, 10)
    trace = []
    out = methods.run_method(resolved, models, x, schedule, generators=golden.per_sample_generators(seeds),
                             callback=trace.append)
    assert [step["i"] for step in trace] == list(range(10)) and torch.equal(trace[-1]["x"], out.x)
    assert out.nfe == 10 + 3


@pytest.mark.parametrize("lam", [0, 9])
def test_method_lam_bounds_are_inclusive(lam: int) -> None:
    resolved = methods.resolve_method("m", {"sampler": "w2sd", "lam": lam}, {"lam": 5}, {"strong": 0, "weak": 1}, 10)
    assert resolved["options"] == {"lam": lam}


def test_forked_generators_continue_the_streams_independently() -> None:
    from w2sd.seeding import fork_generators, per_sample_generators, per_sample_randn

    gens = per_sample_generators([3, 4])
    per_sample_randn(gens, (2,))  # x_T's draw
    forks = [fork_generators(gens), fork_generators(gens)]
    first = per_sample_randn(forks[0], (5,))
    # the same as re-seeding and re-drawing x_T, and drawing from one fork leaves the other and the source alone
    fresh = per_sample_generators([3, 4])
    per_sample_randn(fresh, (2,))
    expected = per_sample_randn(fresh, (5,))
    assert torch.equal(first, expected)
    assert torch.equal(per_sample_randn(forks[1], (5,)), expected)
    assert torch.equal(per_sample_randn(gens, (5,)), expected)
