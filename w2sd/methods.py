# Named sampling methods from config dicts: one spec format shared by every experiment that compares samplers.
"""A method spec is a mapping such as `{sampler: w2sd, lam: 49, inversion: exact}`. `sampler` picks the function;
its model parameters (annotated `Denoiser`) are roles naming entries of the experiment's model table, every other
keyword is an option that overrides the experiment's shared sampler defaults. Both are read from the function's
signature, so adding a sampler is writing the function and naming it in `SAMPLERS`."""
from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence

import torch

from w2sd.sampling import (
    Callback,
    Denoiser,
    SampleOutput,
    Schedule,
    sample_advanced_guidance,
    sample_autoguidance,
    sample_ddim,
    sample_resampling,
    sample_w2sd,
)
from w2sd.validation import ConfigError, check_choice, check_int_range

SAMPLERS: dict[str, Callable[..., SampleOutput]] = {
    "ddim": sample_ddim, "w2sd": sample_w2sd, "autoguidance": sample_autoguidance, "resampling": sample_resampling,
    "advanced_guidance": sample_advanced_guidance}
RUNTIME = ("x", "schedule", "generators", "extra_args", "callback")  # supplied by the caller, never by a spec


def sampler_signature(fn: Callable) -> tuple[dict[str, tuple[str, bool]], dict[str, tuple | None]]:
    """(roles, options) of a sampler: role → (default model name, required), option → its Literal choices or None.
    The first model defaults to `strong`, the others to the model of their own name."""
    hints = typing.get_type_hints(fn)
    roles: dict[str, tuple[str, bool]] = {}
    options: dict[str, tuple | None] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if name in RUNTIME:
            continue
        if hints[name] in (Denoiser, Denoiser | None):
            roles[name] = ("strong" if not roles else name, param.default is inspect.Parameter.empty)
        else:
            options[name] = typing.get_args(hints[name]) if typing.get_origin(hints[name]) is typing.Literal else None
    return roles, options


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
    roles, option_choices = sampler_signature(SAMPLERS[sampler])
    resolved_roles = {}
    for role, (default, required) in roles.items():
        model_name = spec.pop(role, default if required or default in models else None)
        if model_name is None:  # an optional model (W2SD's `final`) the table does not name
            continue
        if model_name not in models:
            raise ConfigError(f"method {name!r}: {role}={model_name!r} is not a model here; "
                              f"available models: {sorted(models)}")
        resolved_roles[role] = model_name
    unknown = sorted(set(spec) - set(option_choices))
    if unknown:
        raise ConfigError(f"method {name!r}: unknown option(s) {unknown} for sampler {sampler!r}; "
                          f"it accepts {list(option_choices)}")
    options = {k: v for k, v in defaults.items() if k in option_choices}
    options.update(spec)
    for key, value in options.items():
        if option_choices[key]:
            check_choice(f"methods.{name}.{key}", value, option_choices[key])
    if num_steps is not None and options.get("lam") is not None:
        check_int_range(f"methods.{name}.lam", options["lam"], 0, num_steps - 1, "λ must be in [0, T−1]")
    return {"sampler": sampler, "roles": resolved_roles, "options": options}


def run_method(
    resolved: Mapping,
    models: Mapping[str, Denoiser],
    x: torch.Tensor,
    schedule: Schedule,
    *,
    generators: Sequence[torch.Generator] | None = None,
    callback: Callback | None = None,
) -> SampleOutput:
    fn = SAMPLERS[resolved["sampler"]]
    runtime = {"generators": generators} if "generators" in inspect.signature(fn).parameters else {}
    roles = {role: models[name] for role, name in resolved["roles"].items()}
    return fn(x=x, schedule=schedule, callback=callback, **runtime, **roles, **resolved["options"])
