"""The instruction channel: the initial instruction, a schedule, and live input (stdin, HTTP on 127.0.0.1).

Every source's input goes through :func:`~flexrl.agent.sanitise.sanitise`, whose notes reach the event log.
"""

from __future__ import annotations

import queue
import re
import threading
from dataclasses import dataclass
from typing import BinaryIO, Sequence, TextIO

from flexrl.agent.instruction_http import InstructionServer
from flexrl.agent.intents import IntentChecker
from flexrl.agent.sanitise import Arrival, sanitise
from flexrl.planners.base import Instruction

INTENT_ARROW = "=>"
"""Separates a schedule item's text from its intent: ``"150:Avoid the ball! => avoid(ball)"``."""


@dataclass(frozen=True)
class ScheduledInstruction:
    """An instruction delivered at a control step, as written in the config (not yet sanitised).

    Attributes:
        step: the control step it arrives at.
        text: what the user wrote.
        intent: the skill call that fulfils it (None: the instruction is not judged).
        source: "initial" or "schedule".
    """

    step: int
    text: str
    intent: str | None = None
    source: str = "schedule"


def parse_schedule_item(item: object) -> ScheduledInstruction:
    """``"300:Avoid the ball! => avoid(ball)"`` -> ScheduledInstruction(300, "Avoid the ball!", "avoid(ball)").

    The intent is optional; an empty one is none. The step's range and the intent's validity are checked
    by the run's config, which knows the episode length and the arena.

    Raises:
        ValueError: one line naming the bad item and the expected form.
    """
    step, sep, rest = item.partition(":") if isinstance(item, str) else ("", "", "")
    if not sep or not re.fullmatch(r"\s*[-+]?\d+\s*", step):
        raise ValueError(f"schedule item {item!r} is not of the form STEP:TEXT or STEP:TEXT {INTENT_ARROW} INTENT "
                         "(e.g. '300:Avoid the ball! => avoid(ball)')")
    text, _, intent = rest.rpartition(INTENT_ARROW) if INTENT_ARROW in rest else (rest, "", "")
    return ScheduledInstruction(int(step), text.strip(), intent.strip() or None, "schedule")


class InstructionChannel:
    """Collects instructions from every source; the runner polls it once per control step.

    Args:
        initial: the run's first instruction.
        schedule: (step, instruction) pairs, delivered at that step; an :class:`Arrival` carries its
            cleaning note to the event log, a None instruction only its note.
        stdin: a stream whose lines become instructions (read on a background thread; a binary stream
            lets undecodable bytes be noted instead of ending the reader).
        http_port: serve ``POST /instruction`` on 127.0.0.1:port (0 picks a free port; None: no server).
        intents: checks the intents of HTTP requests (None: any text is passed on; the runner still
            refuses an invalid one with a note).
        http_host: the address the HTTP app binds (off loopback ``http_token`` is required).
        http_token: the token every HTTP request must carry (None: none).
        extend: adds routes to the HTTP app before it is served (the control room's).

    Raises:
        ValueError: one line, when ``http_port`` is out of range or already in use.
    """

    def __init__(
        self,
        initial: Instruction | None = None,
        schedule: Sequence[tuple[int, Instruction | Arrival | None]] | None = None,
        stdin: TextIO | BinaryIO | None = None,
        http_port: int | None = None,
        intents: IntentChecker | None = None,
        http_host: str = "127.0.0.1",
        http_token: str | None = None,
        extend=None,
    ) -> None:
        arrivals = [(step, a if isinstance(a, Arrival) else Arrival(a, None)) for step, a in schedule or []]
        self._pending: list[tuple[int, Arrival]] = sorted(arrivals, key=lambda p: p[0])
        self._live: queue.Queue[Arrival] = queue.Queue()
        self._initial = initial
        self._server = (InstructionServer(http_port, self._live.put, intents, http_host, http_token, extend)
                        if http_port is not None else None)
        if stdin is not None:
            threading.Thread(target=self._read_lines, args=(stdin,), daemon=True).start()

    @property
    def http_address(self) -> tuple[str, int] | None:
        """(host, port) of the HTTP endpoint, if serving."""
        return self._server.address if self._server else None

    @property
    def http_base_url(self) -> str | None:
        """The HTTP app's base URL (the control room's page, with ``ui=true``), if serving."""
        return self._server.base_url if self._server else None

    @property
    def http_url(self) -> str | None:
        """Where to ``POST`` instructions, if serving."""
        return self._server.url if self._server else None

    def submit(self, raw: str | bytes, source: str = "api", intent: str | None = None) -> None:
        """Queue an instruction from code (thread-safe)."""
        self._live.put(sanitise(raw, source, intent))

    def put(self, arrival: Arrival) -> None:
        """Queue an arrival already cleaned (an instruction, or a note for the event log; thread-safe)."""
        self._live.put(arrival)

    def _read_lines(self, stream: TextIO | BinaryIO) -> None:
        try:
            for line in stream:
                self._live.put(sanitise(line, "stdin"))
        except (OSError, ValueError) as err:  # a closed stream, or undecodable text on a text stream
            self._live.put(Arrival(None, f"stdin: stopped reading: {type(err).__name__}: {err}"))

    def poll(self, step: int) -> list[Arrival]:
        """Everything that arrived by ``step``: the initial instruction, due scheduled ones, live input."""
        out = []
        if self._initial is not None:
            out.append(Arrival(self._initial, None))
            self._initial = None
        while self._pending and self._pending[0][0] <= step:
            out.append(self._pending.pop(0)[1])
        while True:
            try:
                out.append(self._live.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Stop the HTTP server, if any."""
        if self._server is not None:
            self._server.close()
            self._server = None
