"""The instruction grammar and the oracle-labelled data: coverage, labels, and no benchmark text."""

import re
from collections import Counter

import pytest

from flexrl.agent.intents import IntentChecker, arena_world
from flexrl.bench.tasks import default_suite, load_tasks
from flexrl.distill.data import generate, label, read_split, write_dataset
from flexrl.distill.grammar import HELD_OUT, Grammar
from flexrl.planners.menu_prompt import normalise


@pytest.fixture(scope="module")
def examples():
    return generate(4000, seed=0)


def _bare(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", normalise(text))


def test_no_instruction_of_the_shipped_suite_is_in_the_data(examples):
    suite = {ins.text for task in load_tasks([default_suite()]) for ins in task.instructions}
    texts = {e.instruction for e in examples}
    assert not suite & texts  # verbatim
    # The suite's longer wordings (paraphrases, distractors, sequences) stay out even case- and punctuation-blind;
    # two- and three-word commands ("go north", "stop") are what any grammar says and are not held out.
    long_ones = {_bare(t) for t in suite if len(t.split()) > 3}
    assert not long_ones & {_bare(t) for t in texts}


def test_every_intent_is_a_valid_call_sequence_and_every_label_a_candidate(examples):
    checker = IntentChecker(arena_world())
    for e in examples[:1500]:
        if e.intent != "cannot":
            checker.parse(e.intent)
        assert label(e.intent, e.progress, tuple(checker.calls)) == e.label


def test_kinds_templates_and_labels_are_covered(examples):
    kinds = Counter(e.kind for e in examples)
    assert set(kinds) == set(Grammar().kinds)
    labels = Counter(e.label for e in examples)
    for call in ("done", "cannot", "stop", "follow(ball)", "avoid(ball)", "go_to(ball)", "go_to(red_pad)", "move(north_west)"):
        assert labels[call] >= 10, call
    sequences = [e for e in examples if e.kind == "sequence"]
    assert {len(e.intent.split(";")) for e in sequences} == {2, 3}
    assert any(e.progress for e in sequences) and any(not e.progress for e in sequences)


def test_held_out_templates_never_reach_training(examples):
    assert {e.split for e in examples if e.template in HELD_OUT} == {"held_out"}
    assert all(e.template not in HELD_OUT for e in examples if e.split in ("train", "val"))
    assert sum(e.split == "held_out" for e in examples) > 100


def test_every_call_a_held_out_template_asks_for_is_also_trained(examples):
    """Held-out templates hold out a wording, never a call: each common (kind of request, label) of theirs also
    has training rows."""
    trained = {(e.kind, e.label) for e in examples if e.split == "train"}
    held_out = Counter((e.kind, e.label) for e in examples if e.split == "held_out")
    assert {pair for pair, n in held_out.items() if n >= 5} - trained == set()


def test_the_same_seed_makes_the_same_data():
    a, b = generate(50, seed=3), generate(50, seed=3)
    assert a == b and a != generate(50, seed=4)


def test_dataset_files_and_datasheet_round_trip(tmp_path, examples):
    sheet = write_dataset(tmp_path, examples[:200], {"seed": 0})
    assert sheet["examples"] == 200 and sum(sheet["splits"].values()) == 200
    assert sum(sheet["templates"].values()) == 200 and "held_out_templates" in sheet
    back = read_split(tmp_path, "train")
    assert back == [e for e in examples[:200] if e.split == "train"]
    assert not list(tmp_path.glob("*.tmp*"))


def test_distill_settings_are_checked_in_one_line():
    from flexrl.distill.pipeline import DistillConfig
    from flexrl.distill.student import LoraConfig

    with pytest.raises(ValueError, match=r"^first_steps=0; allowed: a positive integer$"):
        DistillConfig(first_steps=0)
    with pytest.raises(ValueError, match=r"^rounds=-1; allowed: an integer >= 0$"):
        DistillConfig(rounds=-1)
    with pytest.raises(ValueError, match=r"^distill.lora.rank=True; allowed: a positive integer$"):
        LoraConfig(rank=True)
    with pytest.raises(ValueError, match=r"^distill.lora.warmup=-2; allowed: an integer >= 0$"):
        LoraConfig(warmup=-2)
    assert DistillConfig(rounds=0, round_steps=0).rounds == 0
