"""The schema of a task file: every key, type and range, declared once as pydantic models.

Why pydantic rather than hand-written checks: one declaration per key gives its type, range, default
and the words for what is allowed; pydantic reports every problem of a task at once with its exact key
path, which maps straight back to a line of the YAML file. Each leaf type is made with :func:`leaf`, so
whatever pydantic finds wrong with it (a list where a number belongs, a number out of range, an unknown
name) becomes one error that says what is allowed, not pydantic's generic wording. Checks that span
fields (arrival steps within the episode and in order, overlapping fixed objects) are in
:func:`cross_checks`, on validated values.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WrapValidator, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

from flexrl.agent.intents import IntentChecker, arena_world
from flexrl.agent.sanitise import MAX_CHARS, sanitise
from flexrl.bench import predicates as preds
from flexrl.envs.arena_env import BALL_MODES
from flexrl.envs.arena_model import PAD_COLOURS, ArenaSpec
from flexrl.envs.world import COMPASS

CATEGORIES = ("literal_motion", "object_goal", "avoid_ball", "follow_ball", "sequence", "switch", "paraphrase",
              "distractor", "impossible")
OBJECTS = ("ball", *PAD_COLOURS)
POINTS = ("agent", "ball", *PAD_COLOURS)
MAX_STEPS = 2000
LIMIT = ArenaSpec().half_size - 0.35
"""Objects are placed at least 0.35 m inside the walls, as the arena's own sampler does."""
MIN_GAP = 0.3
"""Fixed objects closer than this overlap."""


class _Nothing:
    def __repr__(self) -> str:
        return "nothing"


NOTHING = _Nothing()
"""What a problem got where no value was written (a missing key)."""
VALUE_ERROR = "task_value"
"""The pydantic error type of every leaf value: its context has ``what``, ``allowed`` and maybe ``got``."""

_WHAT = {"literal_error": "unknown name", "string_too_short": "empty", "too_short": "too few items",
         "too_long": "too many items", "string_pattern_mismatch": "not a plain name", "finite_number": "out of range",
         "greater_than": "out of range", "greater_than_equal": "out of range", "less_than": "out of range",
         "less_than_equal": "out of range"}


def _what(kind: str) -> str:
    """What is wrong, in words, for a pydantic error type."""
    return _WHAT.get(kind, "wrong type" if kind.endswith("_type") else "bad value")


def reject(what: str, allowed: str, got: Any = NOTHING) -> None:
    """Raise the leaf-value error from a check (``got`` defaults to the value checked)."""
    ctx = {"what": what, "allowed": allowed, **({} if got is NOTHING else {"got": got})}
    raise PydanticCustomError(VALUE_ERROR, "{what}", ctx)


def leaf(tp: Any, allowed: str, *checks, **constraints) -> Any:
    """``tp`` as a task-file value whose every error is one ``VALUE_ERROR`` saying what is allowed.

    Args:
        tp: the pydantic type.
        allowed: what is allowed, in words (also the field's description).
        *checks: functions of the validated value that return it or call :func:`reject`.
        **constraints: pydantic ``Field`` constraints (``strict``, ``ge``, ``min_length``, ...).
    """
    def wrap(raw, handler):
        try:
            return handler(raw)
        except ValidationError as err:
            errors = err.errors()
            if errors[0]["type"] == VALUE_ERROR:
                raise PydanticCustomError(VALUE_ERROR, "{what}", errors[0]["ctx"]) from None
            what = _what(errors[0]["type"] if len(errors) == 1 else "union")
            raise PydanticCustomError(VALUE_ERROR, "{what}", {"what": what, "allowed": allowed}) from None

    return Annotated[tp, Field(description=allowed, **constraints), *map(AfterValidator, checks), WrapValidator(wrap)]


TEXT_ALLOWED = f"a non-empty text of at most {MAX_CHARS} characters without control characters"
INTENT_ALLOWED = "skill calls separated by ';', e.g. go_to(red_pad); stop"


def _text(text: str) -> str:
    arrival = sanitise(text, "task file")
    if arrival.instruction is None:
        reject("empty", TEXT_ALLOWED)
    if arrival.note:  # the run would change it: say how
        reject(arrival.note.partition("instruction: ")[2] or arrival.note, TEXT_ALLOWED)
    return text


@functools.cache
def _intents() -> IntentChecker:
    return IntentChecker(arena_world())


def _intent(intent: str) -> str:
    try:
        _intents().parse(intent)
    except ValueError as err:
        what, _, allowed = str(err).partition("; allowed: ")
        reject(what, allowed or INTENT_ALLOWED)
    return intent


def _range(pair: list) -> list:
    if pair[0] > pair[1]:
        reject("range upside down", "a range [lo, hi] with lo <= hi")
    return pair


def _maybe_range(v: Any) -> Any:
    return _range(v) if isinstance(v, list) else v


def _point(point: Any) -> Any:
    pairs = [point] if isinstance(point, list) else [_range(point.x), _range(point.y)]
    if any(abs(v) > LIMIT for pair in pairs for v in pair):
        reject("outside the arena", f"x and y within +-{LIMIT:g} m")
    return point


_Float = Annotated[float, Field(strict=True, allow_inf_nan=False)]
_Pair = Annotated[list[_Float], Field(min_length=2, max_length=2)]
_Step = Annotated[int, Field(strict=True, ge=0, le=MAX_STEPS - 1)]
_Speed = Annotated[_Float, Field(ge=0, le=1.5)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Box(_Model):
    """A uniform distribution over a box: ``{x: [lo, hi], y: [lo, hi]}``."""

    x: _Pair
    y: _Pair


TaskId = leaf(str, "a name of 1 to 64 letters, digits, '_' or '-' (it names the episode's event file)",
              strict=True, pattern=r"^[A-Za-z0-9_-]{1,64}$")
Category = leaf(Literal[CATEGORIES], ", ".join(CATEGORIES))
Steps = leaf(int, f"an integer from 20 to {MAX_STEPS}", strict=True, ge=20, le=MAX_STEPS)
Text = leaf(str, TEXT_ALLOWED, _text, strict=True)
Intent = leaf(str, INTENT_ALLOWED, _intent, strict=True)
Flag = leaf(bool, "true or false", strict=True)
Expected = leaf(str, "a non-empty text of at most 1000 characters", strict=True, min_length=1, max_length=1000)
At = leaf(_Step | Annotated[list[_Step], Field(min_length=2, max_length=2)],
          f"a step, or a range [lo, hi] of steps with lo <= hi, from 0 to {MAX_STEPS - 1}", _maybe_range)
Point = leaf(_Pair | Box, f"[x, y] or {{x: [lo, hi], y: [lo, hi]}} with x and y within +-{LIMIT:g} m", _point)
BallMode = leaf(Literal[BALL_MODES] | Annotated[list[Literal[BALL_MODES]], Field(min_length=1)],
                f"one of {', '.join(BALL_MODES)}, or a non-empty list of them to pick from")
BallSpeed = leaf(_Speed | Annotated[list[_Speed], Field(min_length=2, max_length=2)],
                 "a speed in m/s from 0 to 1.5, or a range [lo, hi] within it with lo <= hi", _maybe_range)
Metres = leaf(float, "a distance in metres above 0, at most 4", strict=True, gt=0, le=4, allow_inf_nan=False)

PREDICATE_ARGUMENTS: dict[str, Any] = {
    "target": leaf(Literal[OBJECTS], ", ".join(OBJECTS)),
    "targets": leaf(list[Literal[OBJECTS]], f"a list of 1 to 8 of {', '.join(OBJECTS)}", min_length=1, max_length=8),
    "direction": leaf(Literal[tuple(COMPASS)], ", ".join(COMPASS)),
    "radius": Metres,
    "min_distance": Metres,
    "max_speed": leaf(float, "a speed in m/s above 0, at most 5", strict=True, gt=0, le=5, allow_inf_nan=False),
    "share": leaf(float, "a share of steps above 0, at most 1", strict=True, gt=0, le=1, allow_inf_nan=False),
    "grace": leaf(int, f"a number of steps from 0 to {MAX_STEPS - 1}", strict=True, ge=0, le=MAX_STEPS - 1),
    "hold": leaf(int, f"a number of steps from 1 to {MAX_STEPS}", strict=True, ge=1, le=MAX_STEPS),
    "stay": Flag,
}
"""The type of each predicate argument, by name; the predicates' signatures say which they take and the defaults."""
STEP_ARGUMENTS = ("grace", "hold")
"""Predicate arguments counted in steps: they must fit in the episode."""


def _check_model(name: str) -> type[BaseModel]:
    fields = {arg: (PREDICATE_ARGUMENTS[arg], ... if p.default is p.empty else p.default)
              for arg, p in preds.parameters(name).items()}
    return create_model(name, __base__=_Model, predicate=(Literal[name], ...), **fields)


CHECK_MODELS: dict[str, type[BaseModel]] = {name: _check_model(name) for name in preds.PREDICATES}
CheckModel = Annotated[Union[tuple(CHECK_MODELS.values())], Field(discriminator="predicate")]
LayoutModel = create_model(
    "LayoutModel", __base__=_Model, __doc__="Where things start: fixed points or boxes, ball mode and speed.",
    ball_mode=(BallMode, "drift"), ball_speed=(BallSpeed, None), **{name: (Point, None) for name in POINTS})


class InstructionModel(_Model):
    """One instruction of a task's schedule."""

    at: At = 0
    text: Text
    intent: Intent = None
    success: Annotated[list[CheckModel], Field(max_length=8, description=(
        f"a list of up to 8 checks {{predicate: name, argument: value, ...}}; predicates: {', '.join(CHECK_MODELS)}"))] = []


class TaskModel(_Model):
    """One task as written in a file."""

    id: TaskId
    category: Category
    steps: Steps
    layout: LayoutModel = LayoutModel()
    instructions: Annotated[list[InstructionModel], Field(min_length=1, max_length=16, description=(
        "a list of 1 to 16 instructions {at: step, text: ..., intent: ..., success: [...]}"))]
    expected: Expected = ""
    solvable: Flag = True


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a task, located by its key path (``loc``) in the task."""

    loc: tuple
    what: str
    got: Any
    allowed: str


def problems(err: ValidationError) -> list[Problem]:
    """pydantic's errors for a task as problems that each say what was found and what is allowed."""
    out = []
    for e in err.errors():
        kind, loc, ctx = e["type"], e["loc"], e.get("ctx") or {}
        if kind == VALUE_ERROR:
            out.append(Problem(loc, ctx["what"], ctx.get("got", e["input"]), ctx["allowed"]))
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            got = e["input"].get("predicate", NOTHING) if isinstance(e["input"], dict) else NOTHING
            what = "unknown predicate" if kind == "union_tag_invalid" else "missing"
            out.append(Problem((*loc, "predicate"), what, got, ", ".join(CHECK_MODELS)))
        elif kind == "missing":
            out.append(Problem(loc, "missing", NOTHING, _described(loc)))
        elif kind in ("extra_forbidden", "invalid_key"):
            out.append(Problem(loc, "unknown key", loc[-1], _keys(loc[:-1])))
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            out.append(Problem(loc, "not a mapping", e["input"], f"a mapping with keys among {_keys(loc)}"))
        else:  # a list of instructions or checks: its length or type
            out.append(Problem(loc, _what(kind), e["input"], _described(loc)))
    return out


def _schema_at(loc: tuple) -> Any:
    """The model class or leaf field (FieldInfo) at a pydantic error location in a task; None if neither."""
    here: Any = TaskModel
    for part in (*loc, None):
        if isinstance(here, FieldInfo):
            here = here.annotation
        while get_origin(here) is Annotated:
            here = get_args(here)[0]
        if part is None:
            break
        if isinstance(here, type) and issubclass(here, BaseModel):
            here = here.model_fields.get(part)
        elif get_origin(here) is list:
            here = get_args(here)[0]
        else:  # the union of checks: the part is the predicate's tag
            here = CHECK_MODELS.get(part)
    return here if isinstance(here, FieldInfo) or isinstance(here, type) and issubclass(here, BaseModel) else None


def _described(loc: tuple) -> str:
    """The description of the field at ``loc`` (what is allowed there)."""
    model = _schema_at(loc[:-1])
    field = model.model_fields.get(loc[-1]) if model is not None else None
    return field.description if field is not None and field.description else "see docs/bench.md"


def _keys(loc: tuple) -> str:
    """The keys of the mapping at ``loc``."""
    model = _schema_at(loc)
    return ", ".join(model.model_fields) if model is not None else "predicate and that predicate's arguments"


def cross_checks(task: TaskModel) -> list[Problem]:
    """What a validated task gets wrong across fields: steps, order of arrival, judging, fixed objects."""
    out, last = [], -1
    for i, ins in enumerate(task.instructions):
        lo, hi = (ins.at, ins.at) if isinstance(ins.at, int) else ins.at
        if hi >= task.steps:
            out.append(Problem(("instructions", i, "at"), "after the episode ends", ins.at, f"steps 0 to {task.steps - 1}"))
        elif i == 0 and hi != 0:
            out.append(Problem(("instructions", 0, "at"), "the first instruction arrives late", ins.at, "0"))
        elif i > 0 and lo <= last:
            out.append(Problem(("instructions", i, "at"), "arrives before the previous instruction can",
                               ins.at, f"steps after {last}"))
        last = hi
        for j, check in enumerate(ins.success):
            for arg in STEP_ARGUMENTS:
                if getattr(check, arg, 0) >= task.steps:
                    out.append(Problem(("instructions", i, "success", j, arg), "longer than the episode",
                                       getattr(check, arg), f"fewer than steps ({task.steps})"))
    if not any(ins.success for ins in task.instructions):
        out.append(Problem(("instructions",), "no instruction has a success check", NOTHING,
                           "at least one instruction with success: [...] (or the task could never be judged)"))
    fixed = sorted(name for name in POINTS if isinstance(getattr(task.layout, name), list))
    for i, a in enumerate(fixed):
        for b in fixed[i + 1:]:
            pa, pb = getattr(task.layout, a), getattr(task.layout, b)
            if np.hypot(pa[0] - pb[0], pa[1] - pb[1]) < MIN_GAP:
                out.append(Problem(("layout", b), f"impossible layout: {b} overlaps {a} at {pa}", pb,
                                   f"fixed objects at least {MIN_GAP} m apart"))
    return out
