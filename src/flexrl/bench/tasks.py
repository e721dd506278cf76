"""Task suites as data: YAML files of tasks, validated at load with the file, line, key and reason.

A task is a layout distribution, an instruction schedule and success predicates per instruction. A bad
task is rejected with a one-line reason and the other tasks of the file still load.

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
import yaml

from flexrl.bench import predicates as preds
from flexrl.envs.arena_model import PAD_COLOURS, ArenaSpec
from flexrl.skills.library import SKILLS, SkillCall

CATEGORIES = ("literal_motion", "object_goal", "avoid_ball", "follow_ball", "sequence", "switch", "paraphrase",
              "distractor", "impossible")
OBJECTS = ("ball", *PAD_COLOURS)
POINTS = ("agent", "ball", *PAD_COLOURS)
BALL_MODES = ("still", "drift", "chase")
TASK_KEYS = {"id", "category", "steps", "layout", "instructions", "expected", "solvable"}
INSTRUCTION_KEYS = {"at", "text", "intent", "success"}
LAYOUT_KEYS = {"ball_mode", "ball_speed", *POINTS}
_MARGIN = 0.35  # objects are placed at least this far inside the walls, as the arena's own sampler does
_MIN_GAP = 0.3  # fixed objects closer than this overlap


class TaskError(ValueError):
    """A task that cannot run: ``<file>:<line>: <task>.<key>: <reason>``."""


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


def load_tasks(paths: list[str | Path]) -> tuple[list[Task], list[str]]:
    """Load every task of the files; returns the valid tasks and one error line per rejected task or file."""
    tasks: list[Task] = []
    errors: list[str] = []
    seen: dict[str, str] = {}
    for path in map(Path, paths):
        try:
            text = path.read_text()
            node = yaml.compose(text)
            data = yaml.safe_load(text)
        except (OSError, yaml.YAMLError) as err:
            errors.append(f"{path}: cannot read the task file: {' '.join(str(err).split())}")
            continue
        if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
            errors.append(f"{path}:1: the file must be a mapping with a list under 'tasks'")
            continue
        for i, raw in enumerate(data["tasks"]):
            where = _Where(path, node, ["tasks", i])
            try:
                task = _task(raw, where)
                if task.id in seen:
                    raise where.error(["id"], f"duplicate task id {task.id!r} (first in {seen[task.id]})")
                seen[task.id] = str(path)
                tasks.append(task)
            except TaskError as err:
                errors.append(str(err))
    return tasks, errors


class _Where:
    """Locates a key of a task in its file, for error messages."""

    def __init__(self, path: Path, node, prefix: list) -> None:
        self.path, self.node, self.prefix = path, node, prefix

    def error(self, keys: list, reason: str) -> TaskError:
        node, line = self.node, 1
        label = ".".join(str(k) for k in keys) or "task"
        for key in [*self.prefix, *keys]:
            child = None
            if isinstance(node, yaml.MappingNode):
                child = next((v for k, v in node.value if k.value == key), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
                child = node.value[key]
            if child is None:
                break
            node, line = child, child.start_mark.line + 1
        task_id = self._task_id()
        return TaskError(f"{self.path}:{line}: task {task_id}: {label}: {reason}")

    def _task_id(self) -> str:
        node = self.node
        for key in self.prefix:
            node = next((v for k, v in node.value if k.value == key), None) if isinstance(node, yaml.MappingNode) else node.value[key]
        ident = next((v.value for k, v in node.value if k.value == "id"), None) if isinstance(node, yaml.MappingNode) else None
        return repr(ident) if ident else f"#{self.prefix[-1] + 1}"


def _task(raw: Any, where: _Where) -> Task:
    if not isinstance(raw, dict):
        raise where.error([], "a task must be a mapping")
    unknown = sorted(set(raw) - TASK_KEYS)
    if unknown:
        raise where.error([unknown[0]], f"unknown key; allowed: {', '.join(sorted(TASK_KEYS))}")
    for key in ("id", "category", "steps", "instructions"):
        if key not in raw:
            raise where.error([], f"missing key {key!r}")
    if not isinstance(raw["id"], str) or not raw["id"].strip():
        raise where.error(["id"], "must be a non-empty string")
    if raw["category"] not in CATEGORIES:
        raise where.error(["category"], f"{raw['category']!r} is not a category; allowed: {', '.join(CATEGORIES)}")
    steps = raw["steps"]
    if not isinstance(steps, int) or not 20 <= steps <= 2000:
        raise where.error(["steps"], f"{steps!r}; allowed: an integer from 20 to 2000")
    layout = _layout(raw.get("layout") or {}, where)
    if not isinstance(raw["instructions"], list) or not raw["instructions"]:
        raise where.error(["instructions"], "must be a non-empty list")
    instructions = tuple(_instruction(x, where, i, steps) for i, x in enumerate(raw["instructions"]))
    if instructions[0].at != 0:
        raise where.error(["instructions", 0, "at"], "the first instruction must arrive at step 0")
    if not any(ins.success for ins in instructions):
        raise where.error(["instructions"], "no instruction has a success check; the task could never be judged")
    solvable = raw.get("solvable", True)
    if not isinstance(solvable, bool):
        raise where.error(["solvable"], f"{solvable!r}; allowed: true or false")
    return Task(raw["id"], raw["category"], steps, layout, instructions, str(raw.get("expected", "")), solvable,
                str(where.path))


def _layout(layout: Any, where: _Where) -> dict[str, Any]:
    if not isinstance(layout, dict):
        raise where.error(["layout"], "must be a mapping")
    unknown = sorted(set(layout) - LAYOUT_KEYS)
    if unknown:
        raise where.error(["layout", unknown[0]], f"unknown layout key; allowed: {', '.join(sorted(LAYOUT_KEYS))}")
    lim = ArenaSpec().half_size - _MARGIN
    layout = {"ball_mode": "drift", **layout}
    mode = layout["ball_mode"]
    modes = [mode] if isinstance(mode, str) else mode
    if not isinstance(modes, list) or not modes or any(m not in BALL_MODES for m in modes):
        raise where.error(["layout", "ball_mode"], f"{mode!r}; allowed: one of {', '.join(BALL_MODES)} or a list of them")
    speed = layout.get("ball_speed", 0.3)
    speeds = speed if isinstance(speed, list) else [speed, speed]
    if len(speeds) != 2 or not all(isinstance(v, (int, float)) and 0 <= v <= 1.5 for v in speeds) or speeds[0] > speeds[1]:
        raise where.error(["layout", "ball_speed"], f"{speed!r}; allowed: a speed or a range [lo, hi] within 0 to 1.5 m/s")
    fixed = {}
    for name in POINTS:
        if name not in layout:
            continue
        value = layout[name]
        if isinstance(value, dict):
            for axis in ("x", "y"):
                rng = value.get(axis)
                if set(value) != {"x", "y"} or not (isinstance(rng, list) and len(rng) == 2 and rng[0] <= rng[1]
                                                   and all(isinstance(v, (int, float)) and abs(v) <= lim for v in rng)):
                    raise where.error(["layout", name], f"{value!r}; allowed: {{x: [lo, hi], y: [lo, hi]}} within +-{lim:g} m")
        elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            if max(abs(v) for v in value) > lim:
                raise where.error(["layout", name], f"{value} is outside the arena; x and y must be within +-{lim:g} m")
            fixed[name] = np.asarray(value, dtype=float)
        else:
            raise where.error(["layout", name], f"{value!r}; allowed: [x, y] or {{x: [lo, hi], y: [lo, hi]}}")
    names = sorted(fixed)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if np.linalg.norm(fixed[a] - fixed[b]) < _MIN_GAP:
                raise where.error(["layout", b], f"impossible layout: {b} overlaps {a} (closer than {_MIN_GAP} m)")
    return dict(layout)


def _instruction(raw: Any, where: _Where, i: int, steps: int) -> TimedInstruction:
    at_key = ["instructions", i]
    if not isinstance(raw, dict):
        raise where.error(at_key, "an instruction must be a mapping")
    unknown = sorted(set(raw) - INSTRUCTION_KEYS)
    if unknown:
        raise where.error([*at_key, unknown[0]], f"unknown key; allowed: {', '.join(sorted(INSTRUCTION_KEYS))}")
    if not isinstance(raw.get("text"), str):
        raise where.error([*at_key, "text"], "missing or not a string")
    at = raw.get("at", 0)
    ok_int = isinstance(at, int) and 0 <= at < steps
    ok_range = isinstance(at, list) and len(at) == 2 and all(isinstance(v, int) for v in at) and 0 <= at[0] <= at[1] < steps
    if not (ok_int or ok_range):
        raise where.error([*at_key, "at"], f"{at!r}; allowed: a step or a range [lo, hi] within 0..{steps - 1}")
    intent = raw.get("intent")
    if intent is not None:
        for part in str(intent).split(";"):
            try:
                call = SkillCall.parse(part.strip())
            except ValueError as err:
                raise where.error([*at_key, "intent"], str(err)) from None
            if call.name not in SKILLS:
                raise where.error([*at_key, "intent"], f"unknown skill {call.name!r}; allowed: {', '.join(SKILLS)}")
            allowed = tuple(preds.COMPASS) if call.name == "move" else OBJECTS
            bad = [a for a in call.args if a not in allowed]
            if bad:
                raise where.error([*at_key, "intent"], f"unknown argument {bad[0]!r} of {call.name}; allowed: {', '.join(allowed)}")
    checks = []
    for j, check in enumerate(raw.get("success") or []):
        key = [*at_key, "success", j]
        if not isinstance(check, dict) or "predicate" not in check:
            raise where.error(key, "a check must be a mapping with a 'predicate'")
        name = check["predicate"]
        if name not in preds.PREDICATES:
            raise where.error([*key, "predicate"], f"unknown predicate {name!r}; allowed: {', '.join(preds.PREDICATES)}")
        args = {k: v for k, v in check.items() if k != "predicate"}
        allowed = preds.parameters(name)
        extra = sorted(set(args) - set(allowed))
        if extra:
            raise where.error([*key, extra[0]], f"unknown argument of {name}; allowed: {', '.join(allowed) or 'none'}")
        missing = sorted(preds.required(name) - set(args))
        if missing:
            raise where.error(key, f"{name} needs {', '.join(missing)}")
        for arg in preds.OBJECT_ARGS & set(args):
            values = args[arg] if isinstance(args[arg], list) else [args[arg]]
            for v in values:
                if v not in OBJECTS:
                    raise where.error([*key, arg], f"unknown object {v!r}; allowed: {', '.join(OBJECTS)}")
        if name == "moved" and args["direction"] not in preds.COMPASS:
            raise where.error([*key, "direction"], f"{args['direction']!r}; allowed: {', '.join(preds.COMPASS)}")
        checks.append(Check(name, args))
    at_value = at if isinstance(at, int) else (at[0], at[1])
    return TimedInstruction(at_value, raw["text"], intent, tuple(checks))
