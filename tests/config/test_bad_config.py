"""Bad configuration values are refused at composition: one line, before any run directory exists."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flexrl.cli import main
from flexrl.config import resolvers, schema
from flexrl.config.validate import ConfigError, compose_checked

schema.register()
resolvers.register()

BAD = [
    ("train", ["ppo.gamma=2", "ppo.gae_lambda=-3"], "ppo.gamma=2.0; allowed: a number in (0, 1]"),
    ("train", ["ppo.gae_lambda=1.5"], "ppo.gae_lambda=1.5"),
    ("train", ["ppo.learning_rate=0"], "ppo.learning_rate=0.0"),
    ("train", ["ppo.ent_coef=nan"], "ppo.ent_coef=nan"),
    ("train", ["ppo.net_arch=[]"], "ppo.net_arch=[]"),
    ("train", ["ppo.net_arch=[64,0]"], "ppo.net_arch=[64, 0]"),
    ("train", ["ppo.n_envs=0"], "ppo.n_envs=0"),
    ("train", ["ppo.eval_every=-5"], "ppo.eval_every=-5"),
    ("train", ["ppo.target_success=2"], "ppo.target_success=2.0"),
    ("train", ["experiment.seed=-1"], "seed=-1"),
    ("train", ["skill.total_steps=0"], "skill.total_steps=0"),
    ("train", ["checkpoint_every=-1"], "checkpoint_every=-1"),
    ("train", ["time_weight=-1"], "time_weight=-1.0"),
    ("train", ["experiment.name=../../escape"], "experiment.name='../../escape'"),
    ("train", ["experiment.name=.hidden"], "experiment.name='.hidden'"),
    ("train", ["experiment.workspace="], "experiment.workspace"),
    ("train", ["+foo=1"], "unknown key 'foo'"),
    ("train", ["++ppo.foo=1"], "unknown key 'ppo.foo'"),
    ("run", ["++agent.foo=1"], "unknown key 'agent.foo'"),
    ("run", ["agent.min_skill_steps=-100"], "agent.min_skill_steps=-100"),
    ("run", ["planner.history=-5"], "planner.history=-5"),
    ("run", ["experiment.seed=-1"], "experiment.seed=-1"),
    ("run", ["experiment=quick"], "flexrl run has no config group 'experiment'"),
    ("run", ["experiment.name=a/b"], "experiment.name='a/b'"),
    ("eval", ["experiment.seed=4294967296"], "experiment.seed=4294967296"),
    ("bench", ["experiment.name=../x"], "experiment.name='../x'"),
]


@pytest.mark.parametrize(("command", "overrides", "expected"), BAD, ids=[" ".join(o) for _, o, _ in BAD])
def test_bad_values_are_one_line_config_errors(command, overrides, expected):
    with pytest.raises(ConfigError) as err:
        compose_checked(command, overrides)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_dict_fields_still_take_new_keys():
    cfg = compose_checked("run", ["+policies.avoid=workspace/x/checkpoints"])
    assert cfg.policies.avoid == "workspace/x/checkpoints"


@pytest.mark.parametrize("command", [["train", "experiment.name=../../escape"], ["run", "experiment.seed=-1"],
                                     ["train", "ppo.gamma=2"], ["eval", "+foo=1"]])
def test_a_refused_command_leaves_no_directory(tmp_path, capsys, command, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ws = tmp_path / "a" / "ws"
    assert main([*command, f"experiment.workspace={ws}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*")] == []


def test_training_presets_compose_for_train_only():
    assert compose_checked("train", ["experiment=quick"]).experiment.name == "quick"
    assert compose_checked("run", []).experiment.name == "demo"
    assert compose_checked("bench", []).experiment.name == "bench"


_KEYS = ["ppo.gamma", "ppo.gae_lambda", "ppo.learning_rate", "ppo.n_envs", "ppo.n_steps", "ppo.batch_size",
         "ppo.net_arch", "ppo.ent_coef", "ppo.eval_every", "skill.total_steps", "skill.family", "checkpoint_every",
         "experiment.seed", "experiment.name", "experiment.workspace", "tracking.progress", "parent", "time_weight"]
_VALUES = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    st.lists(st.integers(-5, 5000), max_size=4).map(lambda v: "[" + ",".join(map(str, v)) + "]"),
    st.sampled_from(["null", "true", "[]", "{}", "''", "${oops}", "a=b", "[1,", "../..", "~", "\x00"]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(_KEYS), value=_VALUES, prefix=st.sampled_from(["", "+", "++"]))
def test_any_single_override_composes_or_is_one_config_error(key, value, prefix):
    try:
        compose_checked("train", [f"{prefix}{key}={value}"])
    except ConfigError as err:
        assert str(err).strip() and "\n" not in str(err).strip()


def test_every_value_of_a_sweep_is_checked_before_trial_zero():
    with pytest.raises(ConfigError, match=r"ppo.gamma=2.0"):
        compose_checked("train", ["ppo.gamma=0.9,2,0.95"])
    with pytest.raises(ConfigError, match=r"ppo.learning_rate=2.0"):
        compose_checked("train", ["ppo.learning_rate=tag(log, interval(0.0001, 2))"])


def test_a_workspace_that_cannot_be_made_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["eval", f"experiment.workspace={tmp_path / 'afile' / 'ws'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "experiment.workspace=" in err and len(err.splitlines()) == 1 and "Traceback" not in err
