"""expand_sweep lists exactly the jobs Hydra's own multirun launches, in the same order (job num = index)."""

from __future__ import annotations

import sys

import pytest

from flexrl.config import resolvers, schema
from flexrl.config.sweep_expand import expand_sweep
from flexrl.config.validate import ConfigError


def _hydra_multirun(overrides: list[str], workspace) -> list[list[str]]:
    """Run ``flexrl train -m <overrides>`` through Hydra with a task that only records each job's overrides."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    schema.register()
    resolvers.register()
    seen: dict[int, list[str]] = {}

    def record(cfg):
        job = HydraConfig.get().job
        seen[job.num] = list(HydraConfig.get().overrides.task)

    GlobalHydra.instance().clear()
    app = hydra.main(version_base="1.3", config_path="pkg://flexrl.conf", config_name="train")(record)
    saved, sys.argv = sys.argv, ["flexrl train", "-m", *overrides, f"experiment.workspace={workspace}",
                                 "hydra/hydra_logging=none", "hydra/job_logging=none"]
    try:
        app()
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()
    return [seen[i] for i in range(len(seen))]


@pytest.mark.parametrize("overrides", [
    ["experiment=sweep_ppo"],  # the sweep in the experiment's hydra.sweeper.params
    ["skill=reach,avoid", "ppo.gamma=range(0.9,1.0,0.05)", "ppo.n_epochs=3"],  # sweeps on the command line
    # a command-line sweep replaces the experiment's; overrides of hydra itself are no part of a trial
    ["experiment=sweep_ppo", "ppo.gamma=0.9,0.99", "hydra.sweep.subdir=trial-${hydra.job.num}"],
])
@pytest.mark.slow  # Hydra composes every job's config: ~10 s per case on 2 shared cores
def test_same_trials_as_hydra_multirun(overrides, tmp_path):
    hydra_jobs = _hydra_multirun(overrides, tmp_path)
    pinned = f"experiment.workspace={tmp_path}"
    expected = [[o for o in job if o != pinned] for job in hydra_jobs]
    assert expand_sweep("train", overrides) == expected
    assert len(expected) > 1


def test_sweep_ppo_is_the_documented_12_point_grid():
    trials = expand_sweep("train", ["experiment=sweep_ppo"])
    assert len(trials) == 12 and len({tuple(t) for t in trials}) == 12
    assert all("experiment=sweep_ppo" in t for t in trials)


def test_no_sweep_is_one_trial():
    assert expand_sweep("train", ["skill=avoid"]) == [["skill=avoid"]]


@pytest.mark.parametrize("overrides, says", [
    (["experiment=tune_ppo"], "only the basic sweeper"),
    (["ppo.gamma=interval(0.9,0.99)"], "does not support sweep type"),
    (["ppo.lrr=1,2"], "unknown key 'ppo.lrr'"),
])
def test_errors_are_one_line(overrides, says):
    with pytest.raises(ConfigError, match=says) as err:
        expand_sweep("train", overrides)
    assert "\n" not in str(err.value)
