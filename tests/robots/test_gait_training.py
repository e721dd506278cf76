"""`flexrl train skill=locomotion robot=ant`: a run directory with a weights-only gait, evaluated on its bars."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from flexrl.robots.gait import OBS_DIM, GaitPolicy
from flexrl.robots.gait_training import HEADINGS, PARENT_LOG_STD, evaluate_gait

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _flexrl(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flexrl.cli", *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def test_standing_still_meets_the_stop_bar_and_no_heading():
    result = evaluate_gait(lambda obs: np.zeros((len(obs), 8)), episodes=HEADINGS + 1, steps=40)
    assert result.success() == {"walk": 0.0, "start": 0.0, "stop": 1.0, "upright": 1.0}
    assert all(abs(a) < 0.1 for a in result.along) and result.falls == 0 and result.stalled == HEADINGS


def test_a_policy_that_walks_nowhere_is_not_called_a_walker():
    """Thrashing at full torque moves the body but not along each commanded heading."""
    rng = np.random.default_rng(0)
    result = evaluate_gait(lambda obs: rng.uniform(-1, 1, (len(obs), 8)), episodes=HEADINGS + 1, steps=60)
    assert result.success()["walk"] < 0.5


def test_a_tiny_gait_run_refines_once_its_bars_are_met_keeps_refining_across_a_resume_and_writes_a_gait(tmp_path):
    """With a target of 0 the first evaluation (step 1024) meets it and refining starts. The first command's
    budget (1536) ends it mid-refine; the resumed run keeps the refine point and the narrow kernel, so it stops
    at 1024 + 1024 steps, far short of its new 4096-step budget (a resume that forgot the point would refine
    again from the next evaluation, 2560, and stop at 3584). The run was finished, not interrupted: its status
    is set back by hand, the only way to resume a run in mid-refine within one short command."""
    from flexrl.cli import main

    tiny = ["skill=locomotion", "robot=ant", "ppo.n_envs=16", "ppo.n_steps=32", "ppo.batch_size=256",
            "ppo.eval_every=1024", "skill.eval_episodes=9", "ppo.target_success=0.0", "gait.refine_sigma=0.05",
            "gait.refine_steps=1024", f"experiment.workspace={tmp_path}", "tracking.progress=false"]
    assert main(["train", *tiny, "skill.total_steps=1536"]) == 0
    (run,) = (tmp_path / "default").iterdir()
    first = GaitPolicy.load(run / "checkpoints" / "gait").meta
    assert first["refined_from"] == 1024 and first["ended_with"] == {"sigma": 0.05, "learning_rate": 1e-4}
    meta = json.loads((run / "meta.json").read_text())
    (run / "meta.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    assert main(["train", f"resume={run}", f"experiment.workspace={tmp_path}", "skill.total_steps=4096"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 2048 and set(metrics["success"]) == {"walk", "start", "stop", "upright"}
    gait = GaitPolicy.load(run / "checkpoints" / "gait")
    assert gait.act(np.zeros(OBS_DIM, np.float32)).shape == (8,)
    assert gait.meta["format"] == "flexrl-gait/1" and gait.meta["steps"] == 2048
    assert gait.meta["refined_from"] == 1024 and gait.meta["task"]["refine_sigma"] == 0.05
    assert gait.meta["ended_with"] == {"sigma": 0.05, "learning_rate": 1e-4}  # refine() was applied again
    assert (run / "checkpoints" / "gait" / "gait.safetensors").stat().st_size < 2_000_000


def test_refining_narrows_the_tracking_kernel_and_sets_the_learning_rate():
    from flexrl.robots.gait_env import GaitTask
    from flexrl.robots.gait_training import make_gait_model, refiner
    from flexrl.skills.train import PPOConfig

    task = GaitTask(refine_sigma=0.05, refine_steps=100, refine_learning_rate=1e-4)
    model = make_gait_model(PPOConfig(n_envs=4, n_steps=64, batch_size=256), task=task)
    env = model.get_env().venv
    assert env.task.sigma == 0.25 and model.lr_schedule(1.0) == PPOConfig().learning_rate != 1e-4
    refiner(model, task)()
    assert env.task.sigma == 0.05 and env.task.ball_every == task.ball_every and model.lr_schedule(1.0) == 1e-4


@pytest.mark.parametrize("refine", [{"refine_steps": 100}, {"refine_sigma": -1, "refine_steps": 1},
                                    {"refine_sigma": 0.05, "refine_steps": -5}, {"refine_sigma": 0.05, "refine_steps": 1.5}])
def test_refining_without_a_width_or_a_whole_number_of_steps_is_one_line(refine):
    from flexrl.robots.gait_env import GaitTask

    with pytest.raises(ValueError, match=r"^gait.refine_sigma=.* allowed: gait.refine_steps=0 \(no refining\)"):
        GaitTask(**refine)


def test_no_refine_steps_turns_refining_off_whatever_the_width():
    from flexrl.robots.gait_env import GaitTask

    assert GaitTask(refine_sigma=0.05, refine_steps=0).refine_steps == 0
    with pytest.raises(ValueError, match=r"^gait.refine_learning_rate=-0.1; allowed"):
        GaitTask(refine_learning_rate=-0.1)


@pytest.mark.parametrize(("args", "message"), [
    (("skill=locomotion",), "flexrl train: skill=locomotion with robot='orb': only a legged robot has a gait to learn; allowed: robot=ant"),
    (("skill=reach", "robot=ant", "robot.gait=/nonexistent"), "flexrl train: robot.gait='/nonexistent' holds no gait checkpoint"),
    (("skill=locomotion", "robot=ant", "ppo.target_success=1.1"),
     "flexrl train: gait.refine_steps=524288 with ppo.target_success=1.1: refining starts when an evaluation meets"),
    (("skill=locomotion", "robot=ant", "ppo.eval_every=0"), "flexrl train: gait.refine_steps=524288 with ppo.eval_every=0"),
])
def test_a_run_that_cannot_train_is_one_line_before_any_run(tmp_path, capsys, args, message):
    from flexrl.cli import main

    assert main(["train", *args, f"experiment.workspace={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(message), err
    assert not list(tmp_path.rglob("meta.json"))


def test_the_shipped_gait_walks_where_it_is_told_and_stops():
    """bench/gait_bench.py measures the bars on 108 bodies; this is a short version of the same check."""
    gait = GaitPolicy.load()
    result = evaluate_gait(gait.act, episodes=3 * (HEADINGS + 1), steps=200, seed=50_000)
    # 0 falls in 3 x 108 bench episodes, 1 in these 27: falls are rare, not impossible (docs/robots.md).
    assert result.falls <= 1 and result.stop_travel <= 0.2
    # Means over 3 bodies per heading: a few bodies stall instead of walking (0-3 of 96, docs/robots.md).
    assert sum(a >= 0.5 for a in result.along) >= HEADINGS - 1 and max(result.drift) <= 0.2, (result.along, result.drift)


def test_a_fine_tune_starts_from_the_parent_gait_exactly():
    """The parent's actor and observation statistics go into the new model: it acts as the parent did."""
    from flexrl.robots.gait_training import load_parent_gait, make_gait_model, model_actor
    from flexrl.skills.train import PPOConfig

    parent = GaitPolicy.load()
    model = make_gait_model(PPOConfig(n_envs=4, n_steps=64, batch_size=256, net_arch=[128, 128]))
    obs = model.get_env().venv.reset()
    assert not np.allclose(model_actor(model)(obs), parent.act(obs), atol=1e-3)
    load_parent_gait(model, parent)
    assert np.allclose(model_actor(model)(obs), parent.act(obs), atol=1e-4)
    with pytest.raises(ValueError, match=r"parent gait layers .* do not fit ppo.net_arch"):
        load_parent_gait(make_gait_model(PPOConfig(n_envs=4, n_steps=64, batch_size=256, net_arch=[64, 64])), parent)


def test_a_parent_without_a_gait_is_one_line_before_any_run(tmp_path, capsys):
    from flexrl.cli import main

    parent = tmp_path / "parent"
    (parent / "checkpoints").mkdir(parents=True)
    assert main(["train", "skill=locomotion", "robot=ant", f"parent={parent}", f"experiment.workspace={tmp_path / 'ws'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"flexrl train: parent={str(parent)!r}: ") and "holds no gait checkpoint" in err
    assert not list((tmp_path / "ws").rglob("meta.json"))


def test_a_fine_tune_holds_the_parent_actor_still_while_its_fresh_critic_warms_up(tmp_path):
    """A run shorter than the critic's warm-up exports the parent's actor unchanged, with the parent's log std."""
    from flexrl.robots.gait import SHIPPED

    parent = tmp_path / "parent"
    (parent / "checkpoints").mkdir(parents=True)
    (parent / "checkpoints" / "gait").symlink_to(SHIPPED)
    out = _flexrl("train", "skill=locomotion", "robot=ant", f"parent={parent}", "gait.ball_every=20", "skill.total_steps=2048",
                  "ppo.n_envs=16", "ppo.n_steps=64", "ppo.batch_size=256", "ppo.eval_every=0", "gait.refine_steps=0", "skill.eval_episodes=9",
                  f"experiment.workspace={tmp_path / 'ws'}", "tracking.progress=false")
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = (tmp_path / "ws" / "default").iterdir()
    child, shipped = GaitPolicy.load(run / "checkpoints" / "gait"), GaitPolicy.load()
    assert all(np.array_equal(a, b) for pair in zip(child.weights, shipped.weights) for a, b in zip(*pair))
    assert child.meta["log_std"] == pytest.approx(shipped.meta["log_std"]) != PARENT_LOG_STD  # the parent's
    assert child.meta["task"]["ball_every"] == 20
