# w2sd: Weak-to-Strong Diffusion with Reflection — samplers over ε-prediction denoiser callables.
__version__ = "0.1.0"
from w2sd.ddim import ddim_transfer
from w2sd.sampling import (
    SampleOutput,
    reflect,
    sample_autoguidance,
    sample_ddim,
    sample_resampling,
    sample_w2sd,
)
from w2sd.schedule import DiscreteSchedule, make_schedule
from w2sd.seeding import per_sample_generators, per_sample_randn

__all__ = [
    "DiscreteSchedule",
    "SampleOutput",
    "ddim_transfer",
    "make_schedule",
    "per_sample_generators",
    "per_sample_randn",
    "reflect",
    "sample_autoguidance",
    "sample_ddim",
    "sample_resampling",
    "sample_w2sd",
]
