"""Task files: the shipped suite loads; a bad file is rejected at load, one line per problem with file:line."""

from __future__ import annotations

import collections
import re
import textwrap
import time
import tracemalloc

import pytest

from flexrl.bench.safe_yaml import MAX_BYTES
from flexrl.bench.tasks import CATEGORIES, MAX_TASKS, TaskError, default_suite, load_tasks

GOOD = """
  - id: fine
    category: object_goal
    steps: 100
    instructions:
      - {at: 0, text: Go to the red pad, intent: go_to(red_pad), success: [{predicate: reached, target: red_pad}]}
"""
INSTRUCTIONS = ("instructions:\n"
                "  - {text: Go to the red pad, intent: go_to(red_pad), success: [{predicate: reached, target: red_pad}]}\n")


def _write(tmp_path, text: str, name: str = "tasks.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return f


def _rejected(*files) -> tuple[str, ...]:
    with pytest.raises(TaskError) as err:
        load_tasks(list(files))
    return err.value.lines


def _line_of(f, text: str) -> int:
    return next(i + 1 for i, line in enumerate(f.read_text().splitlines()) if text in line)


def test_the_shipped_suite_loads_unchanged_with_34_tasks_in_every_category():
    tasks = load_tasks([default_suite()])
    assert len(tasks) == 34
    counts = collections.Counter(t.category for t in tasks)
    assert set(counts) == set(CATEGORIES)
    assert any(len(t.instructions) > 1 and isinstance(t.instructions[1].at, tuple) for t in tasks)  # random switch step
    moved = next(t for t in tasks if t.id == "go_north").instructions[0].success[0]
    assert (moved.predicate, moved.args) == ("moved", {"direction": "north", "min_distance": 0.6})  # only what is written


def test_sampling_is_seeded():
    task = load_tasks([default_suite()])[0]
    assert task.sample(3) == task.sample(3) and task.sample(3) != task.sample(4)


ISSUE_CASES = {  # issue 13: each was accepted, or crashed only after every episode had run
    "a list where a scalar belongs": (
        "{predicate: [reached], target: red_pad}", "[reached]",
        "instructions.0.success.0.predicate: unknown predicate, got ['reached']; allowed: reached, reached_in_order"),
    "a word for a distance": (
        "{predicate: reached, target: red_pad, radius: abc}", "radius: abc",
        "instructions.0.success.0.radius: wrong type, got 'abc'; allowed: a distance in metres above 0, at most 4"),
    "a word for a step count": (
        "{predicate: kept_away, grace: lots}", "grace: lots",
        "instructions.0.success.0.grace: wrong type, got 'lots'; allowed: a number of steps from 0 to 1999"),
    "a string where a list belongs": (
        "{predicate: reached_in_order, targets: red_pad}", "targets: red_pad",
        "instructions.0.success.0.targets: wrong type, got 'red_pad'; allowed: a list of 1 to 8 of ball, red_pad"),
}


@pytest.mark.parametrize("case", ISSUE_CASES)
def test_the_issue_cases_are_one_line_each_with_file_and_line(tmp_path, case):
    check, marker, message = ISSUE_CASES[case]
    f = _write(tmp_path, f"tasks:\n  - id: bad\n    category: object_goal\n    steps: 100\n    instructions:\n"
                         f"      - at: 0\n        text: Go\n        success:\n          - {check}\n")
    (line,) = _rejected(f)
    assert line.startswith(f"{f}:{_line_of(f, marker)}: task 'bad': {message}")


def test_an_empty_instruction_text_is_rejected(tmp_path):
    f = _write(tmp_path, "tasks:\n" + textwrap.dedent(GOOD).replace("text: Go to the red pad", 'text: "  "'))
    (line,) = _rejected(f)
    assert line.startswith(f"{f}:{_line_of(f, 'text:')}: task 'fine': instructions.0.text: empty, got '  '; "
                           "allowed: a non-empty text of at most 500 characters")


BAD_TASKS = {  # the task's YAML lines after its id, the marker of the line reported, the start of the message
    "unknown key": ("category: object_goal\nsteps: 100\ncolour: red\n" + INSTRUCTIONS, "colour",
                    "colour: unknown key, got 'colour'; allowed: id, category, steps, layout, instructions, expected, solvable"),
    "missing key": ("category: object_goal\n" + INSTRUCTIONS, "id: bad",
                    "steps: missing, got nothing; allowed: an integer from 20 to 2000"),
    "unknown category": ("category: dancing\nsteps: 100\n" + INSTRUCTIONS, "dancing",
                         "category: unknown name, got 'dancing'; allowed: literal_motion, object_goal"),
    "steps out of range": ("category: object_goal\nsteps: 5\n" + INSTRUCTIONS, "steps: 5",
                           "steps: out of range, got 5; allowed: an integer from 20 to 2000"),
    "a number as text": ("category: object_goal\nsteps: '100'\n" + INSTRUCTIONS, "steps:",
                         "steps: wrong type, got '100'; allowed: an integer from 20 to 2000"),
    "unknown object": ("category: object_goal\nsteps: 100\ninstructions:\n"
                       "  - {text: Go, success: [{predicate: reached, target: purple_pad}]}",
                       "purple_pad", "instructions.0.success.0.target: unknown name, got 'purple_pad'; allowed: ball, red_pad"),
    "unknown predicate argument": (
        "category: object_goal\nsteps: 100\ninstructions:\n  - text: Go\n    success:\n      - {predicate: stopped, speed: 1}",
        "speed", "instructions.0.success.0.speed: unknown key, got 'speed'; allowed: predicate, max_speed, hold"),
    "missing predicate argument": (
        "category: object_goal\nsteps: 100\ninstructions:\n  - text: Go\n    success:\n      - {predicate: moved}",
        "predicate: moved", "instructions.0.success.0.direction: missing, got nothing; allowed: north,"),
    "outside the arena": ("category: object_goal\nsteps: 100\nlayout: {agent: [3.0, 0.0]}\n" + INSTRUCTIONS,
                          "layout", "layout.agent: outside the arena, got [3.0, 0.0]; allowed: x and y within +-1.65 m"),
    "overlapping objects": ("category: object_goal\nsteps: 100\nlayout: {agent: [0.5, 0.5], red_pad: [0.55, 0.5]}\n"
                            + INSTRUCTIONS, "layout",
                            "layout.red_pad: impossible layout: red_pad overlaps agent at [0.5, 0.5], got [0.55, 0.5]"),
    "an arrival after the end": (
        "category: switch\nsteps: 100\ninstructions:\n  - {text: Go}\n"
        "  - {at: [50, 150], text: Stop, success: [{predicate: stopped}]}",
        "[50, 150]", "instructions.1.at: after the episode ends, got [50, 150]; allowed: steps 0 to 99"),
    "arrivals out of order": (
        "category: switch\nsteps: 100\ninstructions:\n  - {text: Go}\n  - {at: 40, text: A}\n"
        "  - {at: 30, text: B, success: [{predicate: stopped}]}",
        "at: 30", "instructions.2.at: arrives before the previous instruction can, got 30; allowed: steps after 40"),
    "a step argument longer than the episode": (
        "category: avoid_ball\nsteps: 30\ninstructions:\n  - {text: Avoid, success: [{predicate: kept_away}]}",
        "kept_away", "instructions.0.success.0.grace: longer than the episode, got 40; allowed: fewer than steps (30)"),
    "nothing to judge": ("category: object_goal\nsteps: 100\ninstructions:\n  - {text: Go}", "instructions:",
                         "instructions: no instruction has a success check, got nothing; allowed: at least one instruction"),
    "a key holding a line break": ("category: object_goal\nsteps: 100\n? \"a\\nb\"\n: 1\n" + INSTRUCTIONS, "? ",
                                   "'a\\nb': unknown key, got 'a\\nb'; allowed: id, category,"),
    "a path for an id": ("category: object_goal\nsteps: 100\n" + INSTRUCTIONS, "id:",
                         "id: not a plain name, got '../bad'; allowed: a name of 1 to 64 letters"),
}


@pytest.mark.parametrize("case", BAD_TASKS)
def test_each_bad_value_is_one_line_naming_file_line_key_value_and_what_is_allowed(tmp_path, case):
    body, marker, message = BAD_TASKS[case]
    ident = "../bad" if case == "a path for an id" else "bad"
    f = _write(tmp_path, "tasks:\n  - " + textwrap.indent(f"id: {ident}\n{body.strip()}\n", "    ").lstrip())
    (line,) = _rejected(f)
    assert line.startswith(f"{f}:{_line_of(f, marker)}: task {ident!r}: {message}"), line


@pytest.mark.parametrize(("intent", "bad"), [("fly(moon)", "fly"), ("go_to(purple_pad)", "purple_pad"),
                                             ("move(north); ", "''"), ("stop(now)", "now")])
def test_an_intent_must_be_calls_of_the_skill_library(tmp_path, intent, bad):
    f = _write(tmp_path, "tasks:" + GOOD.replace("go_to(red_pad)", f"'{intent}'"))
    (line,) = _rejected(f)
    what = re.escape(f"{f}:{_line_of(f, intent)}: task 'fine': instructions.0.intent: ")
    assert re.match(f"{what}.*{re.escape(bad)}.*, got {re.escape(repr(intent))}; allowed: .*go_to\\(ball\\|red_pad", line), line


def test_every_problem_of_every_file_is_reported_and_nothing_loads(tmp_path):
    bad = _write(tmp_path, "tasks:\n" + GOOD + GOOD.replace("fine", "typo").replace("predicate: reached,", "predicate: reachd,")
                 + GOOD.replace("fine", "zero").replace("steps: 100", "steps: 0"), "bad.yaml")
    empty = _write(tmp_path, "", "empty.yaml")
    lines = _rejected(default_suite(), bad, empty)
    assert [re.match(r"(.+?):(\d+): ", line).groups() for line in lines] == [
        (str(bad), str(_line_of(bad, "reachd"))), (str(bad), str(_line_of(bad, "steps: 0"))), (str(empty), "1")]
    assert "unknown predicate, got 'reachd'" in lines[0] and "empty file" in lines[2]


def test_a_duplicate_id_names_where_it_was_first(tmp_path):
    one, two = _write(tmp_path, "tasks:" + GOOD, "one.yaml"), _write(tmp_path, "tasks:" + GOOD, "two.yaml")
    (line,) = _rejected(one, two)
    assert line == (f"{two}:2: task 'fine': id: duplicate task id, got 'fine'; allowed: an id not used before "
                    f"(first at {one}:2)")


@pytest.mark.parametrize(("content", "message"), [
    (b"", ":1: empty file, got no YAML document"),
    (b"# only a comment\n", ":1: empty file"),
    (b"tasks:\n  - id: \xff\xfe\n", ":2: not UTF-8 text, got byte 0xff"),
    (b"tasks:\n  - id: a\x00b\n", ":2: a character YAML does not allow, got '\\x00'"),
    (b"tasks: [ {", ":1: not valid YAML (while parsing a flow node expected the node content"),
    (b"- a\n- b\n", ":1: not a task file, got a list; allowed: a mapping with one key, tasks: a list of 1 to 1000"),
    (b"tasks: []\n", ":1: bad task list, got 0 tasks"),
    (b"tasks: {id: a}\n", ":1: bad task list, got {'id': 'a'}"),
    (b"tasks: []\nsuite: x\n", ":2: not a task file, got keys ['suite', 'tasks']"),
    (b"tasks:\n  - id: a\n    id: b\n", ":3: duplicate key, got 'id' twice; allowed: each key once"),
    (b"tasks: " + b"[" * 100 + b"]" * 100, ":1: nesting too deep, got more than 32 levels"),
    (b"tasks:\n  - {steps: " + b"9" * 5000 + b"}\n", ":2: a value that cannot be read (Exceeds the limit (4300 digits)"),
    (b"tasks:\n  - 3\n", ":2: task #1: not a mapping, got 3; allowed: a mapping with keys among id, category"),
], ids=["empty", "comment", "not utf-8", "nul", "syntax", "a list", "no tasks", "a mapping of tasks", "another key",
        "duplicate key", "deep", "huge int", "a number task"])
def test_a_file_that_is_not_a_task_file_is_one_line(tmp_path, content, message):
    f = tmp_path / "tasks.yaml"
    f.write_bytes(content)
    (line,) = _rejected(f)
    assert line.startswith(f"{f}{message}"), line


def test_size_and_task_count_are_capped(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_BYTES + 1))
    assert _rejected(big) == (f"{big}:1: file too large, got more than {MAX_BYTES} bytes; allowed: at most {MAX_BYTES} bytes",)
    many = _write(tmp_path, "tasks:\n" + "  - {}\n" * (MAX_TASKS + 1), "many.yaml")
    assert _rejected(many) == (f"{many}:1: bad task list, got {MAX_TASKS + 1} tasks; allowed: a mapping with one key, "
                               f"tasks: a list of 1 to {MAX_TASKS} tasks",)


def test_a_missing_file_is_one_line(tmp_path):
    assert _rejected(tmp_path / "nope.yaml") == (
        f"{tmp_path / 'nope.yaml'}:1: cannot read the file, got No such file or directory; allowed: a readable YAML file",)


def test_too_many_problems_are_counted_not_listed(tmp_path):
    f = _write(tmp_path, "tasks:\n" + "  - 1\n" * 60)
    lines = _rejected(f)
    assert len(lines) == 51 and lines[-1] == (f"{f}:52: 10 more problems not shown, got 60 in all; "
                                              "allowed: the first 50 shown (fix these first)")


def test_an_alias_bomb_is_refused_before_any_expansion(tmp_path):
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9**10 strings if expanded
    f = _write(tmp_path, "\n".join([*levels, "tasks: *a9"]) + "\n")
    tracemalloc.start()
    start = time.perf_counter()
    lines = _rejected(f)
    elapsed, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert lines == (f"{f}:2: a YAML alias, got *a0; allowed: no aliases (write the value out)",)
    assert elapsed < 0.5 and peak < 2_000_000


def test_a_python_tag_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    f = _write(tmp_path, f"tasks:\n  - !!python/object/apply:os.system ['touch {marker}']\n")
    (line,) = _rejected(f)
    assert line.startswith(f"{f}:2: not valid YAML (could not determine a constructor for the tag") and not marker.exists()


def test_flexrl_bench_end_to_end_writes_a_report(tmp_path, capsys):
    from flexrl.cli import main

    assert main(["bench", "planner=oracle", "baselines=[random]", "suite.tasks=[go_north,stop_now]", "episodes=1",
                 f"experiment.workspace={tmp_path}"]) == 0
    (report,) = tmp_path.glob("bench/*/report.md")
    text = report.read_text()
    assert "| oracle |" in text and "| random |" in text and "| literal_motion |" in text
    assert (report.parent / "success.png").is_file() and (report.parent / "events" / "oracle").is_dir()


def test_flexrl_bench_with_a_bad_suite_file_exits_2_before_any_work(tmp_path, capsys):
    from flexrl.cli import main
    from flexrl.runs.run_dir import find_runs

    two = GOOD.replace("fine", "two").replace("target: red_pad}", "target: red_pad, radius: abc}")
    bad = _write(tmp_path, "tasks:" + GOOD + two, "bad.yaml")
    workspace = tmp_path / "workspace"
    assert main(["bench", f"suite.files=['{bad}']", "episodes=1", "baselines=[]", "planner=oracle",
                 f"experiment.workspace={workspace}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"flexrl bench: {bad}:{_line_of(bad, 'radius: abc')}: task 'two': instructions.0.success.0.radius: "
                   "wrong type, got 'abc'; allowed: a distance in metres above 0, at most 4"]
    assert find_runs(workspace) == [] and not list(workspace.rglob("report.md"))


def test_flexrl_bench_rejects_unknown_task_ids_in_one_line(tmp_path, capsys):
    from flexrl.cli import main

    assert main(["bench", "planner=oracle", "suite.tasks=[nope]", f"experiment.workspace={tmp_path}"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("flexrl bench: suite.tasks entry 'nope'")
