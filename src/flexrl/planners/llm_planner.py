"""The LLM planner: scores every valid skill call by its log-likelihood given the prompt (SayCan-style).

An invalid decision cannot happen: the model never writes free text, it only ranks the candidates.
Small models carry a strong prior for some calls whatever the prompt says, so each score is calibrated
by subtracting the same call's score under a content-free prompt (instruction and observation "N/A",
no history). The system text, the instruction and the observation's fixed part (the pads, which never
move: ``PlanContext.observation_fixed``) change rarely, so the backend prefills them once and reuses
their KV cache; per decision the model reads the rest of the observation and the calls.

Every scored token costs a row of the forward pass, so how much of each call is scored is a setting
(``calls``): "whole"; "naming_word" (the default), which stops an argument of several words at the
word that already names it among the candidates ("go_to(red" for "go_to(red_pad)", whose "_pad)"
every pad shares) and scores the rest whole; or "distinguishing", which cuts every call after its
first word that sets it apart ("go_to(ball" loses its ")"): fewest tokens, but the closing tokens
carry signal and the embedded model chose worse without them (docs/benchmarks.md).

A NaN or infinite score (e.g. from corrupted weights) would rank arbitrarily, so it is a fault: the
planner raises :class:`NonFiniteScoreError`, an :class:`~flexrl.llm.base.LLMError`, on which the runner
falls back as on any LLM failure (counted in the run's fallbacks, logged as a ``fallback`` event).
"""

from __future__ import annotations

import math
import re
import time
from importlib import resources
from typing import Callable

from flexrl.llm.base import LLMBackend, LLMError
from flexrl.planners import menu_prompt
from flexrl.planners.base import Decision, PlanContext
from flexrl.planners.config import PlannerConfig
from flexrl.skills.library import SKILLS, SkillCall

CONTENT_FREE = "N/A"
_BATCH_CACHE_TOKENS = 8192
OBSERVATION_LABEL = "Observation:"
Affordance = Callable[[PlanContext, SkillCall], float]


class NonFiniteScoreError(LLMError):
    """A backend's scores (or the affordance's) came out NaN or infinite: no decision can be taken from them."""


def _template(name: str) -> str:
    return (resources.files("flexrl.planners") / "prompts" / name).read_text()


class LLMPlanner:
    """Ground the instruction into one of the candidate skill calls with a language model.

    Args:
        backend: any :class:`~flexrl.llm.base.LLMBackend`.
        config: prompting and scoring options (``name`` is not read here).
        affordance: optional extra score per call (a seam for value-function affordances).
    """

    name = "llm"

    def __init__(self, backend: LLMBackend, config: PlannerConfig | None = None, affordance: Affordance | None = None) -> None:
        self.backend = backend
        self.config = config or PlannerConfig()
        self.affordance = affordance
        card = getattr(backend, "adapter_card", None)
        self.format = self.config.prompt if self.config.prompt != "auto" else ("menu" if card is not None else "chat")
        if card is not None and self.format == "menu" and card.prompt != menu_prompt.FORMAT:
            raise ValueError(f"adapter {card.path} was trained on prompt {card.prompt!r}; allowed: {menu_prompt.FORMAT!r} "
                             "(or planner.prompt=chat)")
        self._calibration: dict[tuple[str, ...], list[float]] = {}
        self._system_cache: dict[tuple[str, ...], str] = {}
        self._scored_cache: dict[tuple[str, tuple[str, ...]], list[str]] = {}

    # ------------------------------------------------------------------------------ prompt
    def system_text(self, candidates: tuple[SkillCall, ...]) -> str:
        """The constant part of the prompt: skills with their descriptions and allowed arguments."""
        key = tuple(str(c) for c in candidates)
        if key not in self._system_cache:
            lines = []
            for spec in SKILLS.values():
                args = _ordered_args(candidates, spec.name)
                sig = f"{spec.name}({', '.join(spec.params)})" if spec.params else spec.name
                allowed = f" {spec.params[0]}: {', '.join(args)}." if args else ""
                lines.append(f"- {sig}: {spec.description}.{allowed}")
            examples = "".join(f'Instruction "{i}" -> {c}\n' for i, c in self.config.examples.items())
            self._system_cache[key] = _template("system.txt").format(
                skills="\n".join(lines), examples=f"\nExamples:\n{examples}" if examples else ""
            )
        return self._system_cache[key]

    def user_text(self, context: PlanContext) -> str:
        """The variable part: earlier instructions, the current one, its progress, the observation."""
        earlier = [i.text for i in context.instructions[:-1]][-self.config.history :] if self.config.history else []
        history = "".join(f"Earlier instruction: {t}\n" for t in earlier)
        current = context.instruction.text if context.instruction else "none"
        progress = f"Done so far: {menu_prompt.progress_words(context.progress)}\n" if context.progress else ""
        return _template("user.txt").format(history=history, instruction=current, progress=progress,
                                            observation=context.observation)

    def prompt(self, context: PlanContext) -> tuple[str, str]:
        """The full prompt and the prefix the backend caches: everything up to the observation's label,
        and then the observation's fixed part (``context.observation_fixed`` characters).

        The instructions change rarely and the observation at every decision, so the observation goes
        last and only its changing part (and the options) are new tokens for most decisions.
        """
        full, prefix = self._split(self.system_text(context.candidates), self.user_text(context))
        observation, n = context.observation, context.observation_fixed
        # Only a cut before a space is taken: the rest then starts a new word and tokenises as it does in
        # the whole prompt (a cut inside a word, or after the space, would change the scores).
        fixed = observation[:n] if 0 < n < len(observation) and observation[n] == " " != observation[n - 1] else ""
        if fixed and full.startswith(f"{prefix} {fixed}"):
            prefix = f"{prefix} {fixed}"
        return full, prefix

    def _split(self, system: str, user: str) -> tuple[str, str]:
        full = self.backend.chat_prompt(system, user)
        return full, full[: full.rindex(OBSERVATION_LABEL) + len(OBSERVATION_LABEL)]

    # ------------------------------------------------------------------------------ scoring
    def _scored(self, options: list[str]) -> list[str]:
        """The texts scored for the calls (see ``PlannerConfig.calls``), worked out once per candidate set."""
        key = (self.config.calls, tuple(options))
        if key not in self._scored_cache:
            cut = {"whole": list, "naming_word": naming_word_prefixes, "distinguishing": distinguishing_prefixes}
            self._scored_cache[key] = cut[self.config.calls](options)
        return self._scored_cache[key]

    def _content_free(self, context: PlanContext, scored: list[str]) -> list[float]:
        key = tuple(scored)
        if key not in self._calibration:
            user = _template("user.txt").format(history="", instruction=CONTENT_FREE, progress="", observation=CONTENT_FREE)
            full, prefix = self._split(self.system_text(context.candidates), user)
            calibration = [s.logprob for s in self.backend.score_options(full, scored, cache_prefix=prefix)]
            self._calibration[key] = self._finite(calibration, scored, "content-free")
        return self._calibration[key]

    def _finite(self, scores: list[float], options: list[str], what: str) -> list[float]:
        """``scores``, unless one is NaN or infinite: then the decision is a fault (NaN ranks arbitrarily)."""
        bad = [f"{o}={s}" for o, s in zip(options, scores) if not math.isfinite(s)]
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise NonFiniteScoreError(f"{self.backend.name} gave non-finite {what} scores ({', '.join(bad[:3])}{more}); "
                                      "allowed: finite numbers (corrupted model weights?)")
        return scores

    def decide(self, context: PlanContext) -> Decision:
        """Score every candidate call and take the best.

        Raises:
            NonFiniteScoreError: a score is NaN or infinite (the runner falls back, as on any LLM error).
            LLMError: the backend's errors, raised as they come (the runner falls back).
        """
        start = time.perf_counter()
        options = [str(c) for c in context.candidates]
        full, prefix, scored = self._request(context)
        raw = self.backend.score_options(full, scored, cache_prefix=prefix)
        scores = [s.logprob for s in raw]
        # Constrained-choice backends score 0 for their pick and a floor for the rest: nothing to calibrate.
        # The menu format's model was trained on it: its scores need no calibration.
        if self.config.calibrate and self.format == "chat" and getattr(self.backend, "likelihoods", True):
            scores = [s - c for s, c in zip(scores, self._content_free(context, scored))]
        if self.affordance is not None:
            scores = [s + self.config.affordance_weight * self.affordance(context, c) for s, c in zip(scores, context.candidates)]
        self._finite(scores, options, "decision")
        best = max(range(len(options)), key=scores.__getitem__)
        tokens = sum(s.n_tokens for s in raw)
        return Decision(
            context.candidates[best], dict(zip(options, scores)), (time.perf_counter() - start) * 1e3, self.name, tokens=tokens
        )

    def decide_batch(self, contexts: list[PlanContext]) -> list[Decision | LLMError]:
        """Decide for many contexts (e.g. one per environment) with their scoring batched into shared passes.

        Same decisions as :meth:`decide` one by one (scores equal up to float rounding): every prompt's
        options are scored in one :class:`~flexrl.llm.batching.BatchScorer` call, then each context is
        decided from those scores. Backends without a batch scorer are asked one context at a time.
        Where :meth:`decide` would raise an :class:`~flexrl.llm.base.LLMError` (e.g. non-finite scores),
        that context gets the error in place of its decision, and the other contexts still get theirs:
        a driver hands it to its episode (:meth:`~flexrl.agent.runner.AgentRunner.episode`), which falls back.
        """
        scorer = self._batch_scorer()
        if scorer is None or len(contexts) < 2:
            return [self._decide_or_fault(c) for c in contexts]
        from flexrl.llm.batch_types import ScoreRequest

        requests = []
        for context in contexts:
            full, prefix, scored = self._request(context)
            requests.append(ScoreRequest(full, tuple(scored), prefix))
        answers = dict(zip(requests, scorer.score_requests(requests)))
        backend = self.backend
        self.backend = _Answered(backend, answers)
        try:
            return [self._decide_or_fault(c) for c in contexts]
        finally:
            self.backend = backend

    def _decide_or_fault(self, context: PlanContext) -> Decision | LLMError:
        try:
            return self.decide(context)
        except LLMError as err:
            return err

    def _request(self, context: PlanContext) -> tuple[str, str, list[str]]:
        """The prompt, the prefix to cache and the texts scored for the candidates, in the planner's format.

        Raises:
            LLMError: the menu format with candidates other than those the adapter was trained on (its
                letters would name other calls); the runner falls back.
        """
        if self.format == "menu":
            trained = (getattr(getattr(self.backend, "adapter_card", None), "info", None) or {}).get("candidates")
            if trained and trained != [str(c) for c in context.candidates]:
                raise LLMError(f"the adapter was trained on {len(trained)} calls ({', '.join(trained[:3])}, ...), this arena "
                               f"offers {len(context.candidates)} others; allowed: the same calls, or planner.prompt=chat")
            menu = menu_prompt.for_context(context)
            return menu.text, menu.cache_prefix, list(menu.labels)
        full, prefix = self.prompt(context)
        return full, prefix, self._scored([str(c) for c in context.candidates])

    def _batch_scorer(self):
        if not hasattr(self, "_scorer"):
            make = getattr(self.backend, "batch_scorer", None)
            # Room for every environment's prompt (~290 tokens each, 16 environments in `flexrl bench`) and
            # the previous tick's: with the default 4096 tokens some episodes lost their cached pads each
            # tick, and the suite took 3 min 52 s instead of 3 min 37 s (docs/bench.md; at most ~370 MB of KV).
            self._scorer = make(_BATCH_CACHE_TOKENS) if callable(make) else None
        return self._scorer


class _Answered:
    """The planner's backend, answering the scoring requests of one batch from their precomputed scores."""

    def __init__(self, backend: LLMBackend, answers: dict) -> None:
        self._backend, self._answers = backend, answers
        self.name = backend.name

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def score_options(self, prompt: str, options: list[str], cache_prefix: str | None = None):
        from flexrl.llm.batch_types import ScoreRequest

        found = self._answers.get(ScoreRequest(prompt, tuple(options), cache_prefix))
        return found if found is not None else self._backend.score_options(prompt, options, cache_prefix=cache_prefix)


def distinguishing_prefixes(options: list[str]) -> list[str]:
    """Cut each option after its first word at which no other option starts with the same text.

    Cuts fall only at word ends or the option's end, so a cut text tokenises as it does inside the
    whole option, and no cut text is a prefix of another: their probabilities stay those of disjoint
    answers, each naming one option. An option that no cut sets apart (it is a prefix of another
    option, or a duplicate) is scored whole.
    """
    return [_first_free_cut(options, i, _word_ends(option)) for i, option in enumerate(options)]


def naming_word_prefixes(options: list[str]) -> list[str]:
    """Cut each call's argument after its first word that no other option starts with; the rest stay whole.

    "go_to(red_pad)" becomes "go_to(red" when no other option starts with "go_to(red"; "go_to(ball)",
    whose argument is one word, and "move(north_east)", whose "move(north" other options share, stay
    whole. Cut texts start no other option and no other option is a prefix of them (each text names one
    call, as in :func:`distinguishing_prefixes`), and they fall at word ends, so they tokenise as they
    do inside the whole call.
    """
    out = []
    for i, option in enumerate(options):
        start, end = option.find("("), option.rfind(")")
        inner = [e for e in _word_ends(option) if start < e <= end] if 0 <= start < end else []
        out.append(_first_free_cut(options, i, inner[:-1]))  # never the argument's last word: that is whole
    return out


def _word_ends(text: str) -> list[int]:
    return [m.end() for m in re.finditer(r"[A-Za-z0-9]+", text)]


def _first_free_cut(options: list[str], i: int, ends: list[int]) -> str:
    """``options[i]`` cut at the first of ``ends`` where no other option starts with the cut text, else whole."""
    option = options[i]
    others = [o for j, o in enumerate(options) if j != i]
    return next((option[:e] for e in ends if not any(o.startswith(option[:e]) for o in others)), option)


def _ordered_args(candidates: tuple[SkillCall, ...], name: str) -> list[str]:
    seen: list[str] = []
    for c in candidates:
        if c.name == name:
            seen += [a for a in c.args if a not in seen]
    return seen
