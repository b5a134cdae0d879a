# Typed schemas of the shared config groups, checked right after composition: one `error:` line before any work.
"""Each schema is a dataclass whose annotations are the allowed keys and their types; `check_config` walks the
resolved config against them. A key missing from a group is fine (experiments read optional keys with defaults);
an unknown key — also one added with `+` — or a value of the wrong type stops the run with one ConfigError
naming the key, the value and the expected type. Sampler options — the `sampler` group's shared defaults and the
keys of method specs — are typed by the sampler functions' own signatures (w2sd.methods), so the option list lives
in one place. Field metadata adds bounds (`min`, `multiple`). Local LoRA files are checked for truncation."""
from __future__ import annotations

import difflib
import functools
import json
import math
import struct
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from w2sd.methods import SAMPLERS, sampler_signature
from w2sd.validation import ConfigError


def _at_least(lo: int, hint: str = "", multiple: int | None = None) -> Any:
    return field(metadata={"min": lo, "multiple": multiple, "hint": hint})


def _positive(hint: str = "") -> Any:
    return field(metadata={"above": 0, "number": True, "hint": hint})


# Bounds of sampler options that the sampler functions themselves check only once sampling starts (after the run
# folder exists): checked here too, for the `sampler` group's shared defaults and for every method spec.
OPTION_BOUNDS: dict[str, dict[str, Any]] = {"reflections_per_step": {"min": 1},
                                            "inversion_noise": {"min": 0, "number": True},
                                            "threshold": {"min": 0, "number": True}}
# Floats that may be infinite: an adaptive-reflection threshold of ∞ reflects no sample (w2sd.sampling.reflection).
INFINITE_OK = frozenset({"threshold"})


@dataclass
class ScheduleSchema:
    """VP (DDPM betas) keys, then the flow grid's (`kind: flow`); w2sd.schedule.schedule_from_config refuses a key
    the chosen kind does not take."""

    kind: str
    beta_schedule: str
    beta_start: float
    beta_end: float
    num_train_timesteps: int = _at_least(2)
    spacing: str
    steps_offset: int
    set_alpha_to_one: bool
    shift: float
    use_dynamic_shifting: bool
    mu: float | None
    time_shift_type: str
    invert_sigmas: bool
    shift_terminal: float | None


@dataclass
class SamplerSchema:
    """Besides these, the group may set any sampler option (its shared default), typed by `sampler_options`."""

    T: int
    schedule: ScheduleSchema


@dataclass
class WorldSchema:
    means: list[list[float]]
    std: float = _positive("the standard deviation of every mode")
    ideal_weights: list[float]
    strong_weights: list[float]
    weak_weights: list[float]
    target_mode: int


@dataclass
class ModelSchema:
    kind: str
    hidden: int = _at_least(1)
    layers: int = _at_least(1)
    train_samples: int = _at_least(1)
    max_steps: int = _at_least(1)
    batch_size: int = _at_least(1)
    lr: float
    seed: int


@dataclass
class TrainerSchema:
    accelerator: str
    devices: int | str | list[int]
    strategy: str


_LATENT = "the VAE works on 8×8 pixel blocks"


@dataclass
class PipelineSchema:
    height: int = _at_least(8, _LATENT, multiple=8)
    width: int = _at_least(8, _LATENT, multiple=8)
    num_frames: int | None = _at_least(1)
    batch_size: int = _at_least(1, "prompts per batch")
    negative_prompt: str | None
    control_image: str | None
    ip_adapter_image: str | None
    cpu_threads: int | None = _at_least(1)
    grid_size: int = _at_least(1)
    device_memory_gb: float | None
    trainer: TrainerSchema


@dataclass
class PromptsSchema:
    name: str
    file: str
    column: str
    skip_empty: bool
    limit: int | None = _at_least(1, "null keeps every prompt")
    refined_column: str | None
    control_image_column: str | None
    ip_adapter_image_column: str | None


@dataclass
class LoggerSchema:
    enabled: bool
    mode: str | None
    project: str
    entity: str | None
    group: str | None


@dataclass
class PathsSchema:
    root_dir: str
    log_dir: str
    cache_dir: str
    prompts_dir: str


@dataclass
class SplitSchema:
    test_fraction: float
    seed: int


@dataclass
class ClassifierSchema:
    width: int
    num_features: int
    steps: int
    batch_size: int
    lr: float
    seed: int


@dataclass
class TrainingSchema:
    batch_size: int = _at_least(1)
    lr: float
    ema_decay: float
    cond_dropout: float
    seed: int


@dataclass
class ImageNetSchema:
    dims: int
    channels: list[int]
    emb_dim: int


@dataclass
class DigitsSchema:
    torch_threads: int = _at_least(1)
    clip_x0: bool
    checkpoint_dir: str | None
    split: SplitSchema
    classifier: ClassifierSchema
    training: TrainingSchema
    image_net: ImageNetSchema
    conditional_steps: dict[str, int]


@dataclass
class AblationSchema:
    baseline: str
    weak_bias_ratio: float | None
    weak_gap_scale: float | None


@dataclass
class GapSettingSchema:
    model: str
    cfg: float
    lora: dict[str, float] | None
    prompt: str
    control_scale: float
    ip_adapter_scale: float
    moe: dict[str, Any] | None
    guidance: float | None


@dataclass
class RootSchema:
    """Keys every experiment shares; experiment-specific top-level keys are checked by the experiment."""

    name: str
    task: str | None
    seed: int
    tags: list[str]
    group: str | None
    skip_if_done: bool


GROUPS: dict[str, type] = {"sampler": SamplerSchema, "world": WorldSchema, "model": ModelSchema,
                           "pipeline": PipelineSchema, "prompts": PromptsSchema, "logger": LoggerSchema,
                           "paths": PathsSchema, "digits": DigitsSchema, "ablation": AblationSchema}


CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


# only the top-level keys are read: libyaml's loader reads all 70 global configs in 15 ms, OmegaConf.load in 250
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def known_top_level_keys(conf_dir: Path = CONF_DIR) -> frozenset[str]:
    """Every top-level key that some config file sets (conf/config.yaml and the `@package _global_` files such as
    conf/experiment/*.yaml), the config group names and RootSchema's keys. An experiment reads its own top-level
    keys with defaults, so a `+key` absent from all of these would be silently ignored: a typo."""
    keys = set(typing.get_type_hints(RootSchema)) | set(GROUPS) | {"hydra"}
    keys |= {p.name for p in conf_dir.iterdir() if p.is_dir()}
    for path in sorted(conf_dir.rglob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        if path == conf_dir / "config.yaml" or "@package _global_" in text.split("\n", 1)[0]:
            keys |= {str(k) for k in (yaml.load(text, Loader=YAML_LOADER) or {})} - {"defaults"}
    return frozenset(keys)


def check_top_level_keys(resolved: Mapping[str, Any], conf_dir: Path = CONF_DIR) -> None:
    if not conf_dir.is_dir():  # an installed copy without the configs cannot compose a run either
        return
    known = known_top_level_keys(conf_dir)
    for name in resolved:
        if name not in known:
            close = difflib.get_close_matches(str(name), sorted(known), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"{name}={_show(resolved[name])} is not a key of any config under {conf_dir}; {hint}"
                              "(a new experiment key belongs in that experiment's conf/experiment/*.yaml)")


def _show(value: Any) -> str:
    return "null" if value is None else repr(value)


_WORDS = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings"),
          bool: ("true or false", "booleans")}


def describe(tp: Any, plural: bool = False) -> str:
    """A type in words, for error messages: list[float] → 'a list of numbers'."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        named = [describe(a, plural) for a in args if a is not type(None)]
        return " or ".join(named) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"{'lists' if plural else 'a list'} of {describe(args[0], plural=True)}"
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if origin is dict:
        return f"{'mappings' if plural else 'a mapping'} of names to {describe(args[1], plural=True)}"
    if is_dataclass(tp):
        return f"a mapping with keys {[f.name for f in fields(tp)]}"
    return _WORDS.get(tp, ("any value", "values"))[plural]


def matches(value: Any, tp: Any) -> bool:
    """Whether a plain (resolved) config value has type `tp`; ints count as floats, bools as neither. Types other
    than these plain ones (Sequence, Callable, ...) pass: their owner (e.g. resolve_method) checks them."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return value in args
    if tp is Any or (origin is not None and origin not in (Union, types.UnionType, list, dict)):
        return True
    if origin in (Union, types.UnionType):
        return any(matches(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and matches(v, args[1]) for k, v in value.items())
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _check_bounds(key: str, value: Any, meta: Mapping | None) -> None:
    if not meta or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    hint = f" ({meta['hint']})" if meta.get("hint") else ""
    kind = "a number" if meta.get("number") else "an integer"
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(f"{key}={value} must be {kind} >= {meta['min']}{hint}")
    if meta.get("above") is not None and value <= meta["above"]:
        raise ConfigError(f"{key}={value} must be {kind} > {meta['above']}{hint}")
    if meta.get("multiple") and value % meta["multiple"]:
        raise ConfigError(f"{key}={value} must be a multiple of {meta['multiple']}{hint}; "
                          f"e.g. {value - value % meta['multiple'] or meta['multiple']}")


def check_finite(key: str, value: Any) -> None:
    """No NaN anywhere in the resolved config, and no ±∞ outside INFINITE_OK: a NaN weight or noise level would run
    to the end, store `null` in results.json and report numbers that mean nothing."""
    if isinstance(value, dict):
        for name, item in value.items():
            check_finite(f"{key}.{name}" if key else str(name), item)
    elif isinstance(value, list):
        for item in value:
            check_finite(key, item)
    elif isinstance(value, float) and not math.isfinite(value):
        if math.isinf(value) and key.rpartition(".")[2] in INFINITE_OK:
            return
        allowed = " (or .inf)" if key.rpartition(".")[2] in INFINITE_OK else ""
        raise ConfigError(f"{key}={value} must be a finite number{allowed}")


def sampler_options() -> dict[str, Any]:
    """Option name → annotation, over every sampler of w2sd.methods: the shared defaults the `sampler` group may set."""
    options: dict[str, Any] = {}
    for sampler in SAMPLERS.values():
        hints = typing.get_type_hints(sampler)
        for name in sampler_signature(sampler)[1]:
            options.setdefault(name, hints[name])
    return options


def check_mapping(key: str, value: Any, schema: type, extra: Mapping[str, Any] | None = None) -> None:
    """Check `value` (a resolved mapping at `key`) against a schema dataclass plus `extra` name → type keys;
    any other key is unknown."""
    if not isinstance(value, dict):
        raise ConfigError(f"{key}={_show(value)} must be {describe(schema)}")
    hints = {**typing.get_type_hints(schema), **(extra or {})}
    meta = {f.name: f.metadata for f in fields(schema)}
    for name, item in value.items():
        at = f"{key}.{name}" if key else str(name)
        if name not in hints:
            close = difflib.get_close_matches(str(name), list(hints), n=1)
            hint = f"; did you mean {key}.{close[0]}?" if close else ""
            raise ConfigError(f"{at}={_show(item)} is not a known key of {key}{hint} (known: {list(hints)})")
        tp = hints[name]
        if is_dataclass(tp):
            check_mapping(at, item, tp)
            continue
        if not matches(item, tp):
            raise ConfigError(f"{at}={_show(item)} must be {describe(tp)}")
        _check_bounds(at, item, meta.get(name) or (OPTION_BOUNDS.get(name) if extra and name in extra else None))


def check_method_specs(key: str, methods: Any) -> None:
    """Value types of method options, from the sampler function's annotations; names and unknown options are
    checked by w2sd.methods.resolve_method when the experiment validates."""
    if not isinstance(methods, dict):
        return
    for name, spec in methods.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"{key}.{name}={_show(spec)} must be a method spec such as {{sampler: w2sd}}")
        sampler = SAMPLERS.get(spec.get("sampler"))
        if sampler is None:
            continue
        hints = typing.get_type_hints(sampler)
        for option in sampler_signature(sampler)[1]:
            if option in spec and not matches(spec[option], hints[option]):
                raise ConfigError(f"{key}.{name}.{option}={_show(spec[option])} must be {describe(hints[option])}")
            if option in spec:
                _check_bounds(f"{key}.{name}.{option}", spec[option], OPTION_BOUNDS.get(option))


def check_safetensors(key: str, path: Path) -> None:
    """A .safetensors file is complete: its JSON header parses and the file is as long as the header's last tensor
    says (a truncated download or copy fails here, not minutes later inside load_lora_weights)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        try:
            header = json.loads(handle.read(length)) if 0 <= length <= size - 8 else None
        except ValueError:
            header = None
    if not isinstance(header, dict):
        raise ConfigError(f"{key}={path} is not a readable .safetensors file (damaged header); download or copy it "
                          "again")
    ends = [v.get("data_offsets", [0, 0])[-1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    end = max(ends, default=0)
    if size < 8 + length + end:
        raise ConfigError(f"{key}={path} is truncated ({size} of {8 + length + end} bytes); download or copy it "
                          "again")


def _check_lora_files(gap: Mapping) -> None:
    for model, spec in (gap.get("models") or {}).items():
        for name, lora in ((spec or {}).get("loras") or {}).items():
            path = Path(str(lora.get("path"))) if isinstance(lora, dict) and lora.get("path") else None
            if path is not None and path.is_dir() and lora.get("weight_name"):
                path = path / str(lora["weight_name"])
            if path is not None and path.is_file() and path.suffix == ".safetensors":
                check_safetensors(f"gap.models.{model}.loras.{name}.path", path)


def check_config(cfg: DictConfig) -> dict:
    """Resolve `cfg` and check the shared groups, gap settings and method specs; returns the resolved dict."""
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        where = f"{err.full_key}: " if getattr(err, "full_key", None) else ""
        raise ConfigError(f"{where}{first}") from err
    check_top_level_keys(resolved)
    check_finite("", resolved)
    check_mapping("", {k: v for k, v in resolved.items() if k in typing.get_type_hints(RootSchema)},
                  RootSchema)
    for group, schema in GROUPS.items():
        if resolved.get(group) is not None:
            check_mapping(group, resolved[group], schema, sampler_options() if group == "sampler" else None)
    gap = resolved.get("gap")
    if isinstance(gap, dict):
        for name, setting in (gap.get("settings") or {}).items():
            check_mapping(f"gap.settings.{name}", setting, GapSettingSchema)
        check_method_specs("gap.methods", gap.get("methods"))
        _check_lora_files(gap)
    check_method_specs("methods", resolved.get("methods"))
    return resolved
