"""A small oracle dataset recorded once per session (real episodes, real Minari files)."""

import pytest
import torch

from flexrl.data.collect import collect
from flexrl.data.tasks import generate_tasks
from flexrl.planners.oracle import OraclePlanner
from flexrl.skills.policies import PolicySet

DATASET = "flexrl/arena-orb-oracle-v0"


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """(root, dataset id, datasheet) of 10 oracle episodes on the orb."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("datasets")
    sheet = collect(generate_tasks(10, seed=7), [7], OraclePlanner(), PolicySet.load(), None, root, DATASET,
                    {"planner": "oracle", "robot": "orb", "tasks": "generated"}, n_envs=5)
    return root, DATASET, sheet
