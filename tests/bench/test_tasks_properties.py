"""Property tests of the task-file loader: any file either loads as written or is refused in file:line lines.

Valid tasks of the shipped suite are mutated (keys dropped or added, values replaced by random scalars,
lists and mappings, wrapped in lists or unwrapped, values moved between keys) and random text and bytes
are read as task files. The loader must return tasks whose every value is the one written, or raise
TaskError whose lines each name the file and a line in it; never any other exception, never a hang.
"""

from __future__ import annotations

import copy
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flexrl.bench.tasks import Task, TaskError, default_suite, load_tasks

RAW_TASKS = yaml.safe_load(default_suite().read_text())["tasks"]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into ``value``."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    return [prefix] + [p for k, v in children for p in _paths(v, (*prefix, k))]


def _at(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


SUITE_PATHS = _paths(RAW_TASKS)[1:]
KEYS = sorted({path[-1] for path in SUITE_PATHS if isinstance(path[-1], str)})
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.floats(), st.text(max_size=12),
                    st.sampled_from(["reached", "red_pad", "ball", "north", "go_to(ball)", "stop", "", " ", "0", "1e3"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=3), max_leaves=6)
LEAVES = [(i, path) for i, task in enumerate(RAW_TASKS) for path in _paths(task)[1:]
          if not isinstance(_at(task, path), (dict, list))]
RETYPED = {int: [float, str], float: [str], bool: [int, str], str: [lambda text: [text]]}
"""The same value as another type: 100 -> 100.0 or "100", true -> 1, "north" -> ["north"]."""
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated_tasks(draw) -> dict:
    """A task of the shipped suite with one to three random changes."""
    task = copy.deepcopy(draw(st.sampled_from(RAW_TASKS)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(task)[1:]))
        parent, key = _at(task, path[:-1]), path[-1]
        change = draw(st.sampled_from(["replace", "borrow", "drop", "add", "wrap", "unwrap"]))
        if change == "replace":
            parent[key] = draw(VALUES)
        elif change == "borrow":  # a value valid somewhere else in the suite
            parent[key] = copy.deepcopy(_at(RAW_TASKS, draw(st.sampled_from(SUITE_PATHS))))
        elif change == "drop":
            del parent[key]
        elif change == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS) | st.text(min_size=1, max_size=6))] = draw(VALUES)
        elif change == "wrap":
            parent[key] = [parent[key]]
        elif change == "unwrap" and isinstance(parent[key], list) and parent[key]:
            parent[key] = parent[key][0]
    return task


def _load(text: str | bytes) -> tuple[Path, list[Task] | tuple[str, ...]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tasks.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        try:
            return path, load_tasks([path])
        except TaskError as err:
            return path, err.lines


def _assert_refused_in_lines(path: Path, lines: tuple[str, ...], text: str | bytes) -> None:
    raw = text if isinstance(text, bytes) else text.encode()
    n_lines = max(raw.count(b"\n"), len(raw.decode(errors="replace").splitlines())) + 1  # YAML breaks lines at \r too
    assert isinstance(lines, tuple) and lines, f"accepted: {lines}"
    for line in lines:
        m = re.match(rf"{re.escape(str(path))}:(\d+): .+, got .+; allowed: .+", line)
        assert m and 1 <= int(m.group(1)) <= n_lines and "\n" not in line, line


def _written(task: Task) -> dict:
    """The task as its file would say it, every default spelled out."""
    return {"id": task.id, "category": task.category, "steps": task.steps, "layout": task.layout,
            "instructions": [{"at": list(i.at) if isinstance(i.at, tuple) else i.at, "text": i.text, "intent": i.intent,
                              "success": [{"predicate": c.predicate, **c.args} for c in i.success]}
                             for i in task.instructions],
            "expected": task.expected, "solvable": task.solvable}


def _with_defaults(raw: dict) -> dict:
    return {"expected": "", "solvable": True, **raw, "layout": {"ball_mode": "drift", **raw.get("layout", {})},
            "instructions": [{"at": 0, "intent": None, "success": [], **ins} for ins in raw["instructions"]]}


def _same(loaded: Any, written: Any) -> bool:
    """Equal and of the same type, but for an integer written where a number is loaded (``1 == True`` in Python)."""
    if isinstance(loaded, dict) and isinstance(written, dict):
        return loaded.keys() == written.keys() and all(_same(loaded[k], written[k]) for k in loaded)
    if isinstance(loaded, (list, tuple)) and isinstance(written, (list, tuple)):
        return len(loaded) == len(written) and all(map(_same, loaded, written))
    return loaded == written and (type(loaded) is type(written) or (type(loaded), type(written)) == (float, int))


@SETTINGS
@given(mutated_tasks())
def test_a_mutated_task_loads_as_written_or_is_refused_in_file_line_lines(task):
    text = yaml.safe_dump({"tasks": [task]}, sort_keys=False)
    path, result = _load(text)
    event("refused" if isinstance(result, tuple) else "loaded")
    if isinstance(result, tuple):
        _assert_refused_in_lines(path, result, text)
    else:
        (loaded,) = result  # loaded exactly as written: nothing dropped, coerced or added
        assert _same(_written(loaded), _with_defaults(task)), (_written(loaded), task)


@SETTINGS
@given(st.sampled_from(LEAVES), st.data())
def test_a_value_written_as_another_type_is_refused_never_coerced(leaf, data):
    index, path = leaf
    task = copy.deepcopy(RAW_TASKS[index])
    parent, key = _at(task, path[:-1]), path[-1]
    parent[key] = data.draw(st.sampled_from(RETYPED[type(parent[key])]))(parent[key])
    text = yaml.safe_dump({"tasks": [task]}, sort_keys=False)
    file, result = _load(text)
    if key == "ball_mode" and isinstance(parent[key], list):  # a list of modes to pick from is also a ball mode
        assert _same(_written(result[0]), _with_defaults(task))
    else:
        _assert_refused_in_lines(file, result, text)


@SETTINGS
@given(st.one_of(VALUES, st.lists(mutated_tasks(), max_size=3).map(lambda tasks: {"tasks": tasks})))
def test_any_yaml_data_loads_or_is_refused_in_file_line_lines(data):
    text = yaml.safe_dump(data)
    path, result = _load(text)
    if isinstance(result, tuple):
        _assert_refused_in_lines(path, result, text)
    else:
        assert len(result) == len(data["tasks"])


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300),
                 st.lists(st.sampled_from(["tasks:", "\n", "  - ", "{", "}", "[", "]", ": ", "&a ", "*a", "!!str ",
                                           "id: x", "\t", "#", "'", '"', "\x00", "\ufeff", "? ", "---\n"]), max_size=40)
                 .map("".join)))
def test_any_text_or_bytes_are_refused_in_file_line_lines_without_a_traceback(content):
    path, result = _load(content)  # nothing this random is a valid suite
    _assert_refused_in_lines(path, result, content)
