# The samplers reproduce main's samples (tests/fixtures/sampling_golden.pt) bit for bit, with the same NFE.
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import make_sampling_golden as golden  # noqa: E402
import make_toy_golden  # noqa: E402

GOLDEN = torch.load(Path(__file__).parent / "fixtures" / "sampling_golden.pt")


@pytest.mark.parametrize("world,steps", [(w, s) for w in golden.WORLDS for s in (10, 20)])
def test_every_sampler_matches_main_bit_for_bit(world: str, steps: int) -> None:
    models, x, schedule, seeds = golden.build(world, steps)
    for name, (fn, kwargs) in golden.cases(world, steps).items():
        out = golden.run_case(fn, kwargs, models, x, schedule, seeds)
        expected = GOLDEN[f"{world}/T{steps}/{name}"]
        assert torch.equal(out.x, expected["x"]), name
        assert out.nfe == expected["nfe"] and out.nfe_per_sample == expected["nfe"], name


def test_callback_trace_matches_main_and_denoised_is_the_clean_prediction() -> None:
    models, x, schedule, seeds = golden.build("1d", 10)
    trace = []
    out = golden.run_case(golden.sample_w2sd, dict(lam=6), models, x, schedule, seeds, callback=trace.append)
    expected = GOLDEN["trace/1d/T10/w2sd_lam6"]
    assert [s["i"] for s in trace] == [e[0] for e in expected] and [s["t"] for s in trace] == [e[1] for e in expected]
    for step, (_, _, x_e, reflected_e) in zip(trace, expected):
        assert torch.equal(step["x"], x_e)
        assert (step["x_reflected"] is None) == (reflected_e is None)
        assert reflected_e is None or torch.equal(step["x_reflected"], reflected_e)
    # Tweedie: x̂₀ = (x + (1 − ā)·∇log p_ā(x))/√ā with the strong mixture's exact score at the step's start
    strong = golden.GaussianMixture.build([[-4.0], [4.0]], 0.87, [0.45, 0.55])
    starts = [x] + [s["x"] for s in trace[:-1]]
    for i, (step, start) in enumerate(zip(trace, starts)):
        start = start if step["x_reflected"] is None else step["x_reflected"]
        a = schedule.level_alpha_bar(i)
        tweedie = (start + (1 - a) * strong.score(start, schedule.level(i))) / a**0.5
        assert torch.allclose(step["denoised"], tweedie, atol=1e-9), i
    assert torch.equal(trace[-1]["denoised"], out.x)  # ā_T = 1 (set_alpha_to_one): the last x̂₀ is the sample


@pytest.mark.parametrize("name", sorted(make_toy_golden.RUNS))
def test_toy_studies_at_reduced_size_match_main_bit_for_bit(name: str) -> None:
    """Through the experiment path (method specs → resolve_method → run_method), against main's samples."""
    expected = torch.load(Path(__file__).parent / "fixtures" / "toy_gmm_golden.pt")[name]
    samples, nfe = make_toy_golden.toy_samples(make_toy_golden.RUNS[name], Path(__file__).parent.parent / "conf")
    assert nfe == expected["nfe"] and list(samples) == list(expected["samples"])
    for method, x in samples.items():
        assert torch.equal(x, expected["samples"][method]), method
