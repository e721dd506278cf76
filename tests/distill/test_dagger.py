"""DAgger's generated episodes: grammar instructions only, never the suite's, never held-out templates."""

from flexrl.bench.tasks import default_suite, load_tasks
from flexrl.distill.dagger import episodes
from flexrl.distill.data import generate


def test_generated_episodes_use_trainable_grammar_instructions_only():
    tasks, kinds = episodes(40, seed=3)
    assert len(tasks) == 40 and all(t.category == "generated" and t.instructions[0].at == 0 for t in tasks)
    assert any(len(t.instructions) == 2 for t in tasks)
    texts = {ins.text for t in tasks for ins in t.instructions}
    assert set(kinds) == texts
    suite = {ins.text for task in load_tasks([default_suite()]) for ins in task.instructions}
    assert not texts & suite
    held_out = {e.instruction for e in generate(3000, seed=0) if e.split == "held_out"}
    trainable = {e.instruction for e in generate(3000, seed=0) if e.split != "held_out"}
    assert not (texts & held_out) - trainable  # a text only a held-out template makes never appears
