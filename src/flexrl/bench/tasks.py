"""Task suites as data: YAML files of tasks, validated completely at load, before any episode runs.

A task is a layout distribution, an instruction schedule and success predicates per instruction. Every
key, type, range and name is checked at load (``flexrl.bench.task_schema``), the file is read without
aliases or code (``flexrl.bench.safe_yaml``), and any problem in any file rejects the load with one line
per problem, ``<file>:<line>: task '<id>': <key>: <what>, got <value>; allowed: <...>``: a benchmark must
not run a suite other than the one written, nor fail after its episodes have run.

```yaml
tasks:
  - id: go_to_red
    category: object_goal
    steps: 200
    layout: {ball_mode: drift, agent: {x: [-1.5, 1.5], y: [-1.5, 1.5]}}
    instructions:
      - at: 0                                      # or a range [lo, hi]: a seeded random step
        text: Go to the red pad
        intent: go_to(red_pad)                     # what the oracle does; ";" separates a sequence
        success: [{predicate: reached, target: red_pad}]
    expected: walk onto the red pad                # what success means, in words
```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from flexrl.bench import predicates as preds
from flexrl.bench.safe_yaml import YamlDocument, YamlFileError, read_yaml
from flexrl.bench.task_schema import CATEGORIES, Problem, TaskModel, cross_checks, problems

__all__ = ["CATEGORIES", "Check", "Task", "TaskError", "TimedInstruction", "default_suite", "load_tasks"]

MAX_TASKS = 1000
"""Tasks per file at most."""
MAX_LINES = 50
"""Problems reported at most; the rest are counted in one more line."""


class TaskError(ValueError):
    """Task files that cannot run: one line per problem, each ``<file>:<line>: <what>, got <value>; allowed: <...>``.

    Attributes:
        lines: the problems, one line each.
    """

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = tuple(lines)


@dataclass(frozen=True)
class Check:
    """One success predicate with its arguments."""

    predicate: str
    args: dict[str, Any] = field(default_factory=dict)

    def __call__(self, segment) -> bool:
        return bool(preds.PREDICATES[self.predicate](segment, **self.args))


@dataclass(frozen=True)
class TimedInstruction:
    """An instruction delivered at a step (or a seeded step in ``[lo, hi]``), with its success checks."""

    at: int | tuple[int, int]
    text: str
    intent: str | None = None
    success: tuple[Check, ...] = ()


@dataclass(frozen=True)
class Task:
    """One benchmark task.

    Attributes:
        id: unique name.
        category: one of CATEGORIES.
        steps: control steps per episode (20 per second).
        layout: the layout distribution (see the module docstring).
        instructions: the schedule, first at step 0.
        expected: the expected behaviour, in words.
        solvable: False for tasks whose right answer is to refuse (the oracle bar counts solvable ones).
        source: file the task came from.
    """

    id: str
    category: str
    steps: int
    layout: dict[str, Any]
    instructions: tuple[TimedInstruction, ...]
    expected: str = ""
    solvable: bool = True
    source: str = ""

    def sample(self, seed: int) -> tuple[dict[str, Any], list[tuple[int, str, str | None]]]:
        """The reset options and the schedule ``(step, text, intent)`` of one seeded episode."""
        rng = np.random.default_rng(seed)
        options: dict[str, Any] = {}
        for key, value in self.layout.items():
            if key == "ball_mode":
                options[key] = value if isinstance(value, str) else str(rng.choice(value))
            elif key == "ball_speed":
                options[key] = float(value) if not isinstance(value, list) else float(rng.uniform(*value))
            elif isinstance(value, dict):
                options[key] = (float(rng.uniform(*value["x"])), float(rng.uniform(*value["y"])))
            else:
                options[key] = tuple(float(v) for v in value)
        schedule = []
        for ins in self.instructions:
            step = ins.at if isinstance(ins.at, int) else int(rng.integers(ins.at[0], ins.at[1] + 1))
            schedule.append((step, ins.text, ins.intent))
        return options, schedule


def default_suite() -> Path:
    """The suite shipped with the package."""
    return Path(str(resources.files("flexrl.bench") / "suites" / "default.yaml"))


def load_tasks(paths: list[str | Path]) -> list[Task]:
    """Every task of the files, in order, once all of them are valid.

    Raises:
        TaskError: every problem of every file (unreadable, not YAML, an alias, a bad key, type, range or
            name, an impossible layout or schedule, a duplicate id), one line each with file and line.
    """
    tasks: list[Task] = []
    lines: list[str] = []
    first_seen: dict[str, str] = {}
    for path in paths:
        try:
            doc = read_yaml(path)
        except YamlFileError as err:
            lines.append(str(err))
            continue
        for i, raw in enumerate(_task_list(doc, lines)):
            task, found = _task(doc, i, raw)
            if task is not None and task.id in first_seen:
                found.append(Problem(("id",), "duplicate task id", task.id,
                                     f"an id not used before (first at {first_seen[task.id]})"))
            elif task is not None:
                first_seen[task.id] = f"{doc.path}:{doc.locate(('tasks', i, 'id'))[0]}"
                tasks.append(task)
            lines += [_line(doc, i, raw, p) for p in found]
    if len(lines) > MAX_LINES:
        where = lines[MAX_LINES].split(": ", 1)[0]
        lines = [*lines[:MAX_LINES], f"{where}: {len(lines) - MAX_LINES} more problems not shown, got {len(lines)} in all; "
                                     f"allowed: the first {MAX_LINES} shown (fix these first)"]
    if lines:
        raise TaskError(lines)
    return tasks


def _task_list(doc: YamlDocument, lines: list[str]) -> list:
    """The list under ``tasks:``, or [] with a line in ``lines`` for a file of any other shape."""
    data, allowed = doc.data, f"a mapping with one key, tasks: a list of 1 to {MAX_TASKS} tasks"
    if not isinstance(data, dict) or set(data) != {"tasks"}:
        extra = [k for k in data if k != "tasks"] if isinstance(data, dict) else []
        got = f"keys {sorted(map(str, data))}" if isinstance(data, dict) else f"a {type(data).__name__}"
        lines.append(f"{doc.path}:{doc.locate(extra[:1])[0]}: not a task file, got {got[:80]}; allowed: {allowed}")
        return []
    tasks = data["tasks"]
    if not isinstance(tasks, list) or not 1 <= len(tasks) <= MAX_TASKS:
        got = f"{len(tasks)} tasks" if isinstance(tasks, list) else _shown(tasks)
        lines.append(f"{doc.path}:{doc.locate(('tasks',))[0]}: bad task list, got {got}; allowed: {allowed}")
        return []
    return tasks


def _task(doc: YamlDocument, i: int, raw: Any) -> tuple[Task | None, list[Problem]]:
    """The task at ``tasks[i]`` and its problems (the task is None when there are any)."""
    try:
        model = TaskModel.model_validate(raw)
    except ValidationError as err:
        return None, problems(err)
    found = cross_checks(model)
    if found:
        return None, found
    instructions = tuple(
        TimedInstruction(ins.at if isinstance(ins.at, int) else tuple(ins.at), ins.text, ins.intent,
                         tuple(Check(c.predicate, c.model_dump(exclude_unset=True, exclude={"predicate"})) for c in ins.success))
        for ins in model.instructions)
    layout = {k: v for k, v in model.layout.model_dump().items() if v is not None}
    return Task(model.id, model.category, model.steps, layout, instructions, model.expected, model.solvable,
                str(doc.path)), []


def _line(doc: YamlDocument, i: int, raw: Any, problem: Problem) -> str:
    """``<file>:<line>: task '<id>': <key path>: <what>, got <value>; allowed: <...>``."""
    line, found = doc.locate(("tasks", i, *problem.loc))
    keys = [*found[2:], *problem.loc[-1:]] if found[-1:] != problem.loc[-1:] else found[2:]  # a missing key too
    key = ".".join(map(_key, keys))
    ident = raw.get("id") if isinstance(raw, dict) else None
    label = f"task {ident!r}" if isinstance(ident, str) and ident else f"task #{i + 1}"
    return (f"{doc.path}:{line}: {label}: {key + ': ' if key else ''}{problem.what}, got {_shown(problem.got)}; "
            f"allowed: {problem.allowed}")


def _key(part: Any) -> str:
    """One part of a key path: a name or an index as written, any other key quoted (it may hold a line break)."""
    return part if isinstance(part, str) and part.isidentifier() else str(part) if isinstance(part, int) else repr(part)


def _shown(value: Any) -> str:
    """A value as one short line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
