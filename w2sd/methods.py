# Named sampling methods from config dicts: one spec format shared by every experiment that compares samplers.
"""A method spec is a mapping such as `{sampler: w2sd, lam: 49, inversion: exact}`. `sampler` picks the function;
`model` (ddim) or `strong`/`weak`/`final` name entries of the experiment's model table; every other key is a
keyword of that sampler and overrides the experiment's shared sampler defaults."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from w2sd.sampling import (
    ALIGNMENTS,
    INVERSIONS,
    ORDERS,
    WINDOWS,
    Callback,
    Denoiser,
    SampleOutput,
    sample_autoguidance,
    sample_ddim,
    sample_resampling,
    sample_w2sd,
)
from w2sd.schedule import DiscreteSchedule
from w2sd.validation import ConfigError, check_choice, check_int_range

# sampler name → (function, model roles it takes, keyword options it accepts)
SAMPLERS: dict[str, tuple[Any, tuple[str, ...], tuple[str, ...]]] = {
    "ddim": (sample_ddim, ("model",), ()),
    "w2sd": (sample_w2sd, ("strong", "weak", "final"),
             ("lam", "inversion", "order", "window", "reflections_per_step", "inversion_noise")),
    "autoguidance": (sample_autoguidance, ("strong", "weak"), ("w",)),
    "resampling": (sample_resampling, ("strong", "weak"), ("lam", "alignment", "window")),
}
DEFAULT_ROLES = {"model": "strong", "strong": "strong", "weak": "weak"}
NEEDS_GENERATORS = {"w2sd", "resampling"}
CHOICES = {"inversion": INVERSIONS, "order": ORDERS, "window": WINDOWS, "alignment": ALIGNMENTS}


def resolve_sampler_config(sampler: Mapping) -> dict:
    """Check the shared `sampler:` config group (T ≥ 2, λ ∈ [0, T−1]) and fill λ = T − 1 when it is null."""
    resolved = dict(sampler)
    check_int_range("sampler.T", resolved.get("T"), 2, None, "W2SD needs at least two sampling steps")
    if resolved.get("lam") is None:
        resolved["lam"] = resolved["T"] - 1
    check_int_range("sampler.lam", resolved["lam"], 0, resolved["T"] - 1, "λ must be in [0, T−1]")
    return resolved


def sampler_defaults(sampler: Mapping) -> dict:
    """Sampler keywords shared by all methods: the sampler group without T and the schedule."""
    return {k: v for k, v in sampler.items() if k not in ("T", "schedule")}


def resolve_method(name: str, spec: Mapping, defaults: Mapping, models: Mapping[str, Denoiser],
                   num_steps: int | None = None) -> dict:
    """Check a spec against its sampler, the model table and (given `num_steps`, the T it will run with) its λ;
    return {sampler, roles, options} or raise — so a bad method fails before any sampling."""
    spec = dict(spec)
    sampler = spec.pop("sampler", None)
    if sampler not in SAMPLERS:
        raise ConfigError(f"method {name!r}: sampler={sampler!r} is not one of {sorted(SAMPLERS)}")
    _, roles, option_names = SAMPLERS[sampler]
    resolved_roles = {}
    for role in roles:
        model_name = spec.pop(role, DEFAULT_ROLES.get(role))
        if model_name is None:
            continue
        if model_name not in models:
            raise ConfigError(f"method {name!r}: {role}={model_name!r} is not a model here; "
                              f"available models: {sorted(models)}")
        resolved_roles[role] = model_name
    if sampler == "resampling" and spec.get("alignment", "none") == "none":
        resolved_roles.pop("weak", None)
    unknown = sorted(set(spec) - set(option_names))
    if unknown:
        raise ConfigError(f"method {name!r}: unknown option(s) {unknown} for sampler {sampler!r}; "
                          f"it accepts {list(option_names)}")
    options = {k: v for k, v in defaults.items() if k in option_names}
    options.update(spec)
    for key, choices in CHOICES.items():
        if key in options:
            check_choice(f"methods.{name}.{key}", options[key], choices)
    if num_steps is not None and options.get("lam") is not None:
        check_int_range(f"methods.{name}.lam", options["lam"], 0, num_steps - 1, "λ must be in [0, T−1]")
    return {"sampler": sampler, "roles": resolved_roles, "options": options}


def run_method(
    resolved: Mapping,
    models: Mapping[str, Denoiser],
    x: torch.Tensor,
    schedule: DiscreteSchedule,
    *,
    generators: Sequence[torch.Generator] | None = None,
    callback: Callback | None = None,
) -> SampleOutput:
    fn = SAMPLERS[resolved["sampler"]][0]
    roles = {role: models[name] for role, name in resolved["roles"].items()}
    kwargs = dict(resolved["options"])
    if resolved["sampler"] in NEEDS_GENERATORS:
        kwargs["generators"] = generators
    if resolved["sampler"] == "ddim":
        return fn(roles["model"], x, schedule, callback=callback, **kwargs)
    return fn(x=x, schedule=schedule, callback=callback, **roles, **kwargs)
