"""Task files: the shipped suite loads; bad tasks are rejected with file, line, key and reason."""

from __future__ import annotations

import collections
import textwrap

from flexrl.bench.tasks import CATEGORIES, default_suite, load_tasks

GOOD = """
  - id: fine
    category: object_goal
    steps: 100
    instructions:
      - {at: 0, text: Go to the red pad, intent: go_to(red_pad), success: [{predicate: reached, target: red_pad}]}
"""


def _load(tmp_path, body: str):
    f = tmp_path / "tasks.yaml"
    f.write_text("tasks:\n" + textwrap.dedent(body))
    return f, *load_tasks([f])


def test_the_shipped_suite_has_30_plus_tasks_in_every_category():
    tasks, errors = load_tasks([default_suite()])
    assert errors == [] and len(tasks) >= 30
    counts = collections.Counter(t.category for t in tasks)
    assert set(counts) == set(CATEGORIES)
    assert any(len(t.instructions) > 1 and isinstance(t.instructions[1].at, tuple) for t in tasks)  # random switch step


def test_sampling_is_seeded():
    (task, *_), _ = load_tasks([default_suite()])
    assert task.sample(3) == task.sample(3) and task.sample(3) != task.sample(4)


def test_bad_tasks_are_rejected_with_file_line_and_reason_and_the_rest_still_load(tmp_path):
    f, tasks, errors = _load(tmp_path, GOOD + """
  - id: typo
    category: object_goal
    steps: 100
    instructions:
      - {at: 0, text: Go, success: [{predicate: reachd, target: red_pad}]}
  - id: purple
    category: object_goal
    steps: 100
    instructions:
      - {at: 0, text: Go, success: [{predicate: reached, target: purple_pad}]}
  - id: overlap
    category: object_goal
    steps: 100
    layout: {agent: [0.5, 0.5], red_pad: [0.55, 0.5]}
    instructions:
      - {at: 0, text: Go, success: [{predicate: reached, target: red_pad}]}
  - id: outside
    category: literal_motion
    steps: 100
    layout: {agent: [3.0, 0.0]}
    instructions:
      - {at: 0, text: Go, success: [{predicate: stopped}]}
  - id: schema
    category: dancing
    steps: 100
    instructions: []
""")
    assert [t.id for t in tasks] == ["fine"]
    assert len(errors) == 5
    typo, purple, overlap, outside, schema = errors
    lines = f.read_text().splitlines()
    line_of = lambda text: next(i + 1 for i, line in enumerate(lines) if text in line)  # noqa: E731
    assert typo.startswith(f"{f}:{line_of('reachd')}: task 'typo': instructions.0.success.0.predicate: unknown predicate 'reachd'")
    assert "unknown object 'purple_pad'" in purple and f":{line_of('purple_pad')}:" in purple
    assert "impossible layout: red_pad overlaps agent" in overlap
    assert "outside the arena" in outside and "layout.agent" in outside
    assert "category: 'dancing' is not a category; allowed: literal_motion" in schema


def test_unreadable_file_is_one_error(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("tasks: [ {")
    tasks, errors = load_tasks([f, default_suite()])
    assert len(errors) == 1 and errors[0].startswith(f"{f}: cannot read the task file") and len(tasks) >= 30


def test_flexrl_bench_end_to_end_writes_a_report(tmp_path, capsys):
    from flexrl.cli import main

    assert main(["bench", "planner=oracle", "baselines=[random]", "suite.tasks=[go_north,stop_now]", "episodes=1",
                 f"experiment.workspace={tmp_path}"]) == 0
    (report,) = tmp_path.glob("bench/*/report.md")
    text = report.read_text()
    assert "| oracle |" in text and "| random |" in text and "| literal_motion |" in text
    assert (report.parent / "success.png").is_file() and (report.parent / "events" / "oracle").is_dir()


def test_flexrl_bench_rejects_unknown_task_ids_in_one_line(tmp_path, capsys):
    from flexrl.cli import main

    assert main(["bench", "planner=oracle", "suite.tasks=[nope]", f"experiment.workspace={tmp_path}"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("flexrl bench: suite.tasks entry 'nope'")
