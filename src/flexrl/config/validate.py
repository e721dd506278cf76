"""Compose a command's config before Hydra runs it, and turn any config error into one clear line.

Hydra reports a bad override as a multi-line message with a hint about HYDRA_FULL_ERROR; users need the
key, the bad value and what is allowed. Composition with Hydra's own ``compose()`` catches every config
error (unknown key, wrong type, unknown group option, missing value) before any work starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

CONFIG_MODULE = "flexrl.conf"


class ConfigError(ValueError):
    """A configuration error, with a one-line message naming the key and what is allowed."""


MAX_CHECKED_RANGE = 50
"""A range sweep longer than this is checked at its two ends only."""


def _values(override) -> list[str]:
    """The concrete values of a sweep override worth checking (all choices; a range's or interval's ends)."""
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return list(override.sweep_string_iterator())
    if isinstance(value, RangeSweep):
        every = list(override.sweep_string_iterator())
        return every if len(every) <= MAX_CHECKED_RANGE else [every[0], every[-1]]
    if isinstance(value, IntervalSweep):
        return [str(value.start), str(value.end)]
    return [override.get_value_element_as_str()]


def _parse(overrides: list[str]) -> list:
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        detail = lines[1].split(": ", 1)[-1] if len(lines) > 1 else "not key=value"
        raise ConfigError(f"{lines[0] if lines else 'bad override'}: {detail}; quote values that hold "
                          "parentheses, commas or brackets, e.g. 'intent=\"go_to(red_pad)\"'") from None


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """Concrete override lists that together use every checked value of every sweep once.

    The first list takes each sweep's first value; each further list changes one sweep to another value.
    A sweep is checked value by value, not as the full product, so a bad third value fails before trial 0.
    """
    parsed = _parse(overrides)
    options = []
    for o in parsed:
        if o.is_sweep_override():
            prefix = {"ADD": "+", "FORCE_ADD": "++", "DEL": "~"}.get(o.type.name, "")
            options.append([f"{prefix}{o.get_key_element()}={v}" for v in _values(o)])
        else:
            options.append([o.input_line])
    first = [values[0] for values in options]
    variants = [first]
    for i, values in enumerate(options):
        variants += [[*first[:i], value, *first[i + 1:]] for value in values[1:]]
    return variants


def concrete_overrides(overrides: list[str]) -> list[str]:
    """The overrides with each sweep replaced by its first value."""
    return sweep_variants(overrides)[0]


def compose_checked(command: str, overrides: list[str]) -> DictConfig:
    """Compose ``command``'s config with ``overrides``; raise ConfigError (one line) on any problem.

    A sweep (``-m``) is checked value by value (:func:`sweep_variants`); the config of its first trial is returned.
    """
    variants = sweep_variants(overrides)
    for variant in variants[1:]:
        _compose_one(command, variant)
    return _compose_one(command, variants[0])


def _compose_one(command: str, concrete: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        try:
            cfg = compose(config_name=command, overrides=concrete, return_hydra_config=True)
        except (ConfigCompositionException, MissingConfigException, OmegaConfBaseException) as err:
            raise ConfigError(_explain(err, command)) from None
        job = job_config(cfg)
        try:
            missing = sorted(OmegaConf.missing_keys(job))
            if missing:
                raise ConfigError(f"missing value for {missing[0]!r}; set it on the command line: {missing[0]}=...")
            OmegaConf.resolve(job)
        except OmegaConfBaseException as err:
            raise ConfigError(_explain(err, command)) from None
        from flexrl.config.schema import SCHEMAS

        extra = unknown_keys(job, OmegaConf.structured(SCHEMAS[command]))
        if extra:
            parent = extra[0].rpartition(".")[0]
            raise ConfigError(f"unknown key {extra[0]!r} (added with + or ++); allowed keys"
                              f"{' of ' + parent if parent else ''}: {', '.join(_keys(command, parent))}")
        try:  # builds the dataclasses, so each one's range checks run before Hydra makes a run directory
            OmegaConf.to_object(job)
        except (ValueError, TypeError) as err:
            raise ConfigError(_first_line(str(err))) from None
        except OmegaConfBaseException as err:
            raise ConfigError(_explain(err, command)) from None
        return cfg


def load_run_config(path: Path, command: str) -> Any:
    """A run's stored ``config.yaml``, checked against ``command``'s schema and built into its dataclass.

    Raises:
        ConfigError: one line naming the file and what is wrong with it.
    """
    from flexrl.config.schema import SCHEMAS

    try:
        stored = OmegaConf.load(path)
        if not isinstance(stored, DictConfig):
            raise ValueError(f"holds a {type(stored).__name__}, not a mapping")
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SCHEMAS[command]), stored))
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing; the run cannot be resumed without its config") from None
    except (yaml.YAMLError, OmegaConfBaseException, ValueError, TypeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not a valid {command} config: {_first_line(str(err))}") from None


def unknown_keys(cfg: DictConfig, schema: DictConfig, prefix: str = "") -> list[str]:
    """Keys of ``cfg`` that ``schema`` does not declare (``+key=...`` gets past Hydra's struct mode).

    Below a field typed as a plain dict (``policies: dict[str, str]``) any key is allowed.
    """
    if OmegaConf.get_type(schema) is dict:
        return []
    out = []
    for key in cfg:
        path = f"{prefix}{key}"
        if key not in schema:
            out.append(path)
            continue
        child, declared = cfg.get(key), schema.get(key)
        if isinstance(child, DictConfig) and isinstance(declared, DictConfig):
            out += unknown_keys(child, declared, prefix=f"{path}.")
    return out


def job_config(cfg: DictConfig) -> DictConfig:
    """A copy of a composed config without its ``hydra`` node, keeping its schema type."""
    job = cfg.copy()
    with open_dict(job):
        job.pop("hydra", None)
    return job


def group_options(group: str) -> list[str]:
    """The options of a config group (needs an initialised Hydra)."""
    return sorted(GlobalHydra.instance().config_loader().get_group_options(group))


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _explain(err: BaseException, command: str) -> str:
    cause = err
    while not isinstance(cause, (ConfigKeyError, ConfigAttributeError, ValidationError)):
        nxt = cause.__cause__ or cause.__context__
        if nxt is None:
            break
        cause = nxt
    text = str(err)
    found = re.search(r"Could not find '([^']+)'", text)
    if isinstance(err, MissingConfigException) and found:
        group, _, option = found.group(1).rpartition("/")
        if group:
            return f"unknown option {group}={option}; allowed: {', '.join(group_options(group))}"
        return f"unknown config {option!r} in {command}"
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)):
        key = getattr(cause, "full_key", None) or _quoted(text)
        parent = key.rpartition(".")[0]
        return f"unknown key {key!r}; allowed keys{' of ' + parent if parent else ''}: {', '.join(_keys(command, parent))}"
    if isinstance(cause, ValidationError):
        key = getattr(cause, "full_key", "?")
        return f"bad value for {key!r}: {_first_line(cause.msg if hasattr(cause, 'msg') else str(cause))}"
    no_group = re.search(r"Could not override '([^']+)'\. No match in the defaults list", text)
    if no_group:
        groups = [g for g in compose(config_name=command, return_hydra_config=True).hydra.runtime.choices
                  if not g.startswith("hydra")]
        hint = (f"; {no_group.group(1)} options ({', '.join(group_options(no_group.group(1)))}) are for other commands"
                if group_options(no_group.group(1)) else "")
        return f"flexrl {command} has no config group {no_group.group(1)!r} (its groups: {', '.join(sorted(groups)) or 'none'}){hint}"
    if "Could not override" in text or "Could not append" in text:
        return _first_line(text) + " " + " ".join(line.strip() for line in text.splitlines()[1:2])
    key = getattr(cause, "full_key", None)
    return f"bad value for {key!r}: {_first_line(text)}" if key else _first_line(text)


def _quoted(text: str) -> str:
    found = re.search(r"'([^']+)'", text)
    return found.group(1) if found else "?"


def _keys(command: str, parent: str) -> list[str]:
    cfg = compose(config_name=command)
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return sorted(str(k) for k in node) if isinstance(node, DictConfig) else []
