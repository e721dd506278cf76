"""flex-rl: an LLM composes PPO-trained MuJoCo skills and follows instructions that change mid-run."""

__version__ = "0.1.0"
