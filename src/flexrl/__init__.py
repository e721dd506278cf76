"""flex-rl: an LLM composes PPO-trained MuJoCo skills and follows instructions that change mid-run.

Importing the package registers its Gymnasium ids (``flexrl/Arena-v0``, ...), as Gymnasium plug-ins such as
``ale_py`` do, so ``gym.make("flexrl/Arena-v0")`` works after ``import flexrl`` and
``gym.make("flexrl:flexrl/Arena-v0")`` works without it. Registration only records entry-point strings:
MuJoCo loads when an env is made.
"""

from flexrl.envs.registration import register_envs

__version__ = "0.1.0"

register_envs()
