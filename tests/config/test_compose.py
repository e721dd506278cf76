"""Every config group option composes; config errors are one line naming the key and what is allowed."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from flexrl.cli import main
from flexrl.config import resolvers, schema
from flexrl.agent.session import RunConfig
from flexrl.config.schema import BenchAppConfig, EvalAppConfig, TrainAppConfig
from flexrl.config.validate import ConfigError, compose_checked, job_config

schema.register()
resolvers.register()
CONF = Path(str(resources.files("flexrl.conf")))
GROUPS = {"train": ["skill", "ppo", "robot", "tracking", "experiment"],
          "run": ["env", "robot", "encoder", "llm", "planner", "agent"],
          "bench": ["planner", "llm", "suite", "encoder"]}
CASES = [(command, group, option.stem) for command, groups in GROUPS.items() for group in groups
         for option in sorted((CONF / group).glob("*.yaml"))]
SCHEMA_OF = {"train": TrainAppConfig, "run": RunConfig, "bench": BenchAppConfig}


@pytest.mark.parametrize(("command", "group", "option"), CASES, ids=[f"{c}-{g}={o}" for c, g, o in CASES])
def test_every_group_option_composes_into_the_typed_schema(command, group, option):
    cfg = compose_checked(command, [f"{group}={option}"])
    obj = OmegaConf.to_object(job_config(cfg))
    assert isinstance(obj, SCHEMA_OF[command])
    assert cfg.hydra.runtime.choices[group] == option


@pytest.mark.parametrize("launcher", ["basic", "joblib", "ray", "ray_cluster"])
def test_launchers_compose(launcher):
    cfg = compose_checked("train", [f"hydra/launcher={launcher}"])
    assert cfg.hydra.runtime.choices["hydra/launcher"] == launcher


def test_eval_composes_and_defaults_are_the_shipped_recipe():
    assert isinstance(OmegaConf.to_object(job_config(compose_checked("eval", []))), EvalAppConfig)
    cfg = compose_checked("train", ["skill=avoid"])
    assert cfg.ppo.total_steps == 250_000 and cfg.ppo.eval_episodes == 100 and cfg.ppo.seed == cfg.experiment.seed


def test_experiment_presets_set_sweeps():
    tune = compose_checked("train", ["experiment=tune_ppo"])
    assert tune.hydra.runtime.choices["hydra/sweeper"] == "optuna" and tune.hydra.sweeper.n_trials >= 8
    grid = compose_checked("train", ["experiment=sweep_ppo"])
    sizes = [len(str(v).split(",")) for v in grid.hydra.sweeper.params.values()]
    assert sizes and __import__("math").prod(sizes) == 12


def test_sweep_overrides_are_checked_value_by_value():
    compose_checked("train", ["ppo.learning_rate=1e-4,1e-3", "ppo.n_epochs=range(2,5)"])
    with pytest.raises(ConfigError, match="ppo.n_epochs"):
        compose_checked("train", ["ppo.n_epochs=x,3"])


@pytest.mark.parametrize(("command", "override", "expected"), [
    ("train", "ppo.lrr=1", ["unknown key 'ppo.lrr'", "learning_rate"]),
    ("train", "ppo.learning_rate=fast", ["'ppo.learning_rate'", "fast", "Float"]),
    ("train", "ppo=fastt", ["unknown option ppo=fastt", "default", "sb3_default"]),
    ("run", "planner=llmm", ["unknown option planner=llmm", "llm, oracle, policy, random"]),
    ("run", "agent.max_step=3", ["unknown key 'agent.max_step'", "max_steps"]),
    ("run", "hydra/launcher=nope", ["hydra/launcher=nope", "joblib"]),
    ("train", "ppo.learning_rate", ["Error parsing override 'ppo.learning_rate'"]),
    ("run", "intent=go_to(red_pad)", ["Unknown function 'go_to'", "quote values"]),
])
def test_config_errors_are_one_clear_line(command, override, expected, capsys):
    assert main([command, override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err


def test_invalid_values_caught_by_the_library_are_one_line(capsys, tmp_path):
    assert main(["run", "env.ball_mode=fly", f"experiment.workspace={tmp_path}"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1] == "flexrl run: ball_mode='fly'; allowed: still, drift, chase, random"
