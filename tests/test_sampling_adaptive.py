# Adaptive reflection (sample_w2sd threshold=): its limits are W2SD and DDIM exactly, per-sample NFE is counted.
import math
import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import make_sampling_golden as golden  # noqa: E402

from w2sd.ddim import ddim_transfer  # noqa: E402
from w2sd.sampling import calibrate_threshold, sample_ddim, sample_w2sd  # noqa: E402
from w2sd.seeding import per_sample_generators, per_sample_randn  # noqa: E402
from w2sd.validation import ConfigError  # noqa: E402


@pytest.fixture(scope="module", params=["1d", "2d"])
def world(request):
    return golden.build(request.param, 20)


def test_threshold_zero_is_w2sd_and_infinity_is_ddim_bit_for_bit(world) -> None:
    models, x, schedule, _ = world
    strong, weak = models["strong"], models["weak"]
    full = sample_w2sd(strong, weak, x, schedule)
    zero = sample_w2sd(strong, weak, x, schedule, threshold=0.0)
    assert torch.equal(zero.x, full.x) and zero.nfe == full.nfe == 58 and zero.nfe_per_sample == 58
    never = sample_w2sd(strong, weak, x, schedule, threshold=math.inf)
    assert torch.equal(never.x, sample_ddim(strong, x, schedule).x)
    assert never.nfe == 20 and never.nfe_per_sample == 20


def reference(strong, weak, x, schedule, lam: int, tau: list[float]) -> tuple[torch.Tensor, int]:
    """One sample at a time, written out: reflect until a reflection at level i moves it by ≤ tau[i] (RMS)."""
    keep, reflections = True, 0
    for i, t in enumerate(schedule.timesteps):
        a, a_next = schedule.level(i), schedule.level(i + 1)
        if i < lam and keep:
            x_adv = ddim_transfer(x, strong(x, t), a, a_next)
            x_new = ddim_transfer(x_adv, weak(x_adv, t), a_next, a)
            keep, x, reflections = float((x_new - x).pow(2).mean().sqrt()) > tau[i], x_new, reflections + 1
        x = ddim_transfer(x, strong(x, t), a, a_next)
    return x, reflections


def calibration_batch(x: torch.Tensor) -> torch.Tensor:
    return per_sample_randn(per_sample_generators(range(1000, 1200)), x.shape[1:], torch.float64)


@pytest.mark.parametrize("quantile", [0.1, 0.4])
def test_between_the_limits_each_sample_follows_its_own_rule_and_pays_only_its_evaluations(world, quantile) -> None:
    models, x, schedule, _ = world
    strong, weak = models["strong"], models["weak"]
    x_cal = calibration_batch(x)
    tau = calibrate_threshold(strong, weak, x_cal, schedule, quantile, lam=15)
    # the calibration: per level, the quantile of the displacements of full W2SD on the held-out batch
    trace = []
    sample_w2sd(strong, weak, x_cal, schedule, lam=15, callback=trace.append)
    moved = (trace[3]["x_reflected"] - trace[2]["x"]).pow(2).mean(1).sqrt()
    assert tau[3] == pytest.approx(float(torch.quantile(moved, quantile)), rel=1e-12)
    assert len(tau) == 20 and tau[15:] == [math.inf] * 5
    out = sample_w2sd(strong, weak, x, schedule, lam=15, threshold=tau)
    rows = [reference(strong, weak, x[r:r + 1], schedule, 15, tau) for r in range(len(x))]
    assert torch.allclose(out.x, torch.cat([r[0] for r in rows]), atol=1e-10, rtol=0)
    counts = [r[1] for r in rows]
    assert 0 < min(counts) < max(counts) <= 15  # the rule really splits the batch
    assert out.nfe_per_sample == pytest.approx(20 + 2 * sum(counts) / len(counts), abs=1e-12)
    assert out.nfe == 20 + 2 * max(counts)  # a call is made while any sample is still reflected


def test_a_scalar_threshold_is_the_same_threshold_on_every_level(world) -> None:
    models, x, schedule, _ = world
    trace = []
    sample_w2sd(models["strong"], models["weak"], x, schedule, lam=1, callback=trace.append)
    median = float((trace[0]["x_reflected"] - x).pow(2).mean(1).sqrt().median())  # of level 0's displacements
    one = sample_w2sd(models["strong"], models["weak"], x, schedule, lam=15, threshold=median)
    many = sample_w2sd(models["strong"], models["weak"], x, schedule, lam=15, threshold=[median] * 20)
    assert torch.equal(one.x, many.x) and one.nfe_per_sample == many.nfe_per_sample
    assert 20 + 2 < one.nfe_per_sample < 20 + 2 * 15 and one.nfe == 20 + 2 * 15  # half the batch goes on


def test_adaptive_inversion_noise_draws_from_each_samples_own_generator(world) -> None:
    """Dropped samples draw nothing, so every sample's noise stream — and its result — is independent of the batch."""
    models, x, schedule, _ = world
    kw = dict(lam=12, threshold=calibrate_threshold(models["strong"], models["weak"], calibration_batch(x), schedule,
                                                    0.3, lam=12), inversion_noise=0.1)
    batch = sample_w2sd(models["strong"], models["weak"], x, schedule, generators=per_sample_generators(range(48)),
                        **kw).x
    for r in (0, 17, 47):
        alone = sample_w2sd(models["strong"], models["weak"], x[r:r + 1], schedule,
                            generators=per_sample_generators([r]), **kw).x
        assert torch.allclose(batch[r:r + 1], alone, atol=1e-10, rtol=0), r


@pytest.mark.parametrize("threshold", [-0.1, math.nan, [0.1] * 19])
def test_bad_threshold_is_rejected(world, threshold) -> None:
    models, x, schedule, _ = world
    with pytest.raises(ConfigError, match=re.escape(f"threshold={threshold} must be a number >= 0 or one per level "
                                                    "(20), or null to reflect every sample")):
        sample_w2sd(models["strong"], models["weak"], x, schedule, threshold=threshold)


class Conditioned:
    """ε of a toy model plus per-sample offsets from (a) `extra_args`, nested in a dict, a tuple and a list next to a
    0-dim scalar that is shared, and (b) per-sample state the model keeps itself, selected by `rows=`."""

    def __init__(self, model, own: torch.Tensor) -> None:
        self.model, self.own = model, own

    def __call__(self, x, t, cond, pair, ladder, rows=None):
        own = self.own if rows is None else self.own[rows]
        offset = cond["shift"] * cond["scale"] + pair[0] - ladder[0] + own
        return self.model(x, t) + offset.view(-1, *([1] * (x.dim() - 1)))


def conditioning(n: int, dtype: torch.dtype) -> dict:
    ramp = torch.linspace(-1.0, 1.0, n, dtype=dtype)
    return {"cond": {"shift": 0.3 * ramp, "scale": torch.tensor(0.5, dtype=dtype)},
            "pair": (0.1 * ramp.flip(0), "unused"), "ladder": [0.05 * ramp ** 2]}


def test_adaptive_sub_batches_carry_each_samples_own_conditioning(world) -> None:
    """When only some samples are still reflected, every per-sample input follows them: the batch result equals each
    sample run alone with its own slice of the conditioning (cut here by hand) — a batch of one is never cut."""
    models, x, schedule, _ = world
    n = len(x)
    extra = conditioning(n, x.dtype)
    own = 0.2 * torch.cos(torch.arange(n, dtype=x.dtype))
    strong, weak = Conditioned(models["strong"], own), Conditioned(models["weak"], -own)
    trace = []
    sample_w2sd(strong, weak, x, schedule, lam=1, extra_args=extra, callback=trace.append)
    median = float((trace[0]["x_reflected"] - x).pow(2).mean(1).sqrt().median())
    out = sample_w2sd(strong, weak, x, schedule, lam=15, threshold=median, extra_args=extra)
    assert 20 + 2 < out.nfe_per_sample < 20 + 2 * 15  # the batch really splits
    for r in range(n):
        one = slice(r, r + 1)
        alone = {"cond": {"shift": extra["cond"]["shift"][one], "scale": extra["cond"]["scale"]},
                 "pair": (extra["pair"][0][one], "unused"), "ladder": [extra["ladder"][0][one]]}
        ref = sample_w2sd(Conditioned(models["strong"], own[one]), Conditioned(models["weak"], -own[one]), x[one],
                          schedule, lam=15, threshold=median, extra_args=alone)
        assert torch.allclose(out.x[one], ref.x, atol=1e-10, rtol=0), r
