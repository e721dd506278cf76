"""One source of truth for every default: a config group's default option restates no schema default differently.

Each command's YAML (run.yaml, train.yaml, bench.yaml, eval.yaml) lists the option of each group it uses
by default. Those options must set every key to the schema dataclass's default, so that a library caller
(``PlannerConfig()``) and ``flexrl run`` get the same settings; a YAML meant to differ says so in a
``# Preset: <why>`` comment. Keys set by interpolation (``${skill.total_steps}``) wire values together
and are not defaults. The experiment group is left out while it is being restructured.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from flexrl.config.schema import SCHEMAS

CONF = Path(str(resources.files("flexrl.conf")))
SKIPPED_GROUPS = {"experiment"}
PRESET_MARK = "# Preset:"


def _default_options() -> list[tuple[str, str, str]]:
    out = []
    for command in SCHEMAS:
        for entry in OmegaConf.to_container(OmegaConf.load(CONF / f"{command}.yaml")).get("defaults", []):
            if isinstance(entry, dict):
                out += [(command, group, option) for group, option in entry.items()
                        if group not in SKIPPED_GROUPS and option is not None]
    return out


def _package(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# @package"):
            return line.split(None, 2)[2].strip()
    return path.parent.name


def _leaves(node: dict, prefix: str):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}.{key}")
        else:
            yield f"{prefix}.{key}", value


def differences(command: str, group: str, option: str) -> list[str]:
    """``key: YAML value vs schema default`` for every key the option sets to something else."""
    path = CONF / group / f"{option}.yaml"
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    values.pop("defaults", None)
    schema = OmegaConf.structured(SCHEMAS[command])
    out = []
    for key, value in _leaves(values, _package(path)):
        if isinstance(value, str) and "${" in value:
            continue
        default = OmegaConf.select(schema, key)
        default = OmegaConf.to_container(default) if OmegaConf.is_config(default) else default
        if value != default:
            out.append(f"{key}: YAML {value!r}, code {default!r}")
    return out


CASES = _default_options()


def test_the_cases_cover_every_command_and_the_planner():
    assert {command for command, _, _ in CASES} >= {"run", "train", "bench"}
    assert {("run", "planner", "llm"), ("bench", "planner", "llm")} <= set(CASES)


@pytest.mark.parametrize(("command", "group", "option"), CASES, ids=["{}-{}={}".format(*case) for case in CASES])
def test_a_default_option_restates_no_default_differently(command, group, option):
    path = CONF / group / f"{option}.yaml"
    if PRESET_MARK in path.read_text():
        pytest.skip(f"{path.name} is a documented preset")
    assert differences(command, group, option) == []


def test_the_check_catches_a_difference(tmp_path, monkeypatch):
    planner = tmp_path / "planner"
    planner.mkdir()
    (planner / "llm.yaml").write_text("name: llm\nhistory: 2\ncalls: naming_word\n")
    monkeypatch.setattr(f"{__name__}.CONF", tmp_path)
    assert differences("run", "planner", "llm") == ["planner.history: YAML 2, code 0"]
