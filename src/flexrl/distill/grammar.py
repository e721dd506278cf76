"""A grammar of instructions with their intents: templates and synonyms per kind of request.

Written from the skill library alone (what each skill does, which objects exist), never from the
benchmark suite. Each generated instruction carries its intent in the oracle's grammar (``go_to(red_pad)``,
``go_to(red_pad); go_to(blue_pad)``, ``cannot``) and the id of the template that made it, so the datasheet
can count templates and some templates can be held out of training (:data:`HELD_OUT`) and scored apart.

Texts come out lower-case without final punctuation: the distilled planner reads every instruction
normalised the same way (:func:`flexrl.planners.menu_prompt.normalise`), so case and "!" never matter. Pads
are referred to by colour (and colour words), never by position: the distilled planner's prompt carries no
coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from flexrl.planners.menu_prompt import normalise

COLOURS = ("red", "green", "blue", "yellow")
COLOUR_WORDS = {
    "red": ["red", "red", "red", "crimson", "scarlet"],
    "green": ["green", "green", "green", "emerald", "lime"],
    "blue": ["blue", "blue", "blue", "navy", "azure"],
    "yellow": ["yellow", "yellow", "yellow", "golden", "amber"],
}
ABSENT_COLOURS = ("purple", "orange", "pink", "black", "white", "brown", "grey", "violet", "silver", "cyan", "magenta")
PAD_NOUNS = ["pad", "pad", "pad", "pad", "square", "tile", "mat", "spot", "patch", "target", "marker", "zone", "circle"]
ABSENT_THINGS = ["cube", "box", "door", "tree", "chair", "table", "kitchen", "tower", "dog", "cat", "car", "bottle",
                 "window", "lamp", "exit", "goal", "flag", "red ball", "second ball", "bridge", "ramp", "key"]
DIRECTIONS = {
    "north": ["north", "north", "northward", "northwards", "up", "upward", "towards the top", "to the top of the arena",
              "towards the top wall", "up the arena"],
    "south": ["south", "south", "southward", "southwards", "down", "downward", "towards the bottom",
              "to the bottom of the arena", "towards the bottom wall", "down the arena"],
    "east": ["east", "east", "eastward", "eastwards", "right", "to the right", "towards the right wall",
             "to the right side of the arena"],
    "west": ["west", "west", "westward", "westwards", "left", "to the left", "towards the left wall",
             "to the left side of the arena"],
    "north_east": ["north-east", "northeast", "north east", "up and to the right", "towards the top right",
                   "to the upper right", "diagonally up and right"],
    "north_west": ["north-west", "northwest", "north west", "up and to the left", "towards the top left",
                   "to the upper left", "diagonally up and left"],
    "south_east": ["south-east", "southeast", "south east", "down and to the right", "towards the bottom right",
                   "to the lower right", "diagonally down and right"],
    "south_west": ["south-west", "southwest", "south west", "down and to the left", "towards the bottom left",
                   "to the lower left", "diagonally down and left"],
}
MOVE_VERBS = ["go", "move", "head", "walk", "run", "travel", "step", "roll", "drive", "proceed", "make your way",
              "take a step", "take a few steps", "shift", "go a little", "move a metre", "move one metre", "scoot"]
GOTO_VERBS = ["go to", "walk to", "move to", "head to", "head for", "get to", "run to", "make your way to", "touch",
              "reach", "step on", "stand on", "visit", "drive to", "travel to", "go over to", "get yourself to",
              "go and touch", "navigate to", "proceed to", "roll over to", "park on", "end up on", "find"]
BALL_VERBS = ["go to", "touch", "get to", "reach", "run into", "bump into", "tag", "catch", "go and touch",
              "make contact with", "hit", "drive into", "head for", "move to", "walk up to"]
FOLLOW = ["follow {o}", "chase {o}", "pursue {o}", "track {o}", "shadow {o}", "tail {o}", "go after {o}",
          "run after {o}", "stay close to {o}", "stay near {o}", "keep close to {o}", "keep up with {o}",
          "stick with {o}", "stick close to {o}", "stay with {o}", "keep near {o}", "hang around {o}",
          "don't let {o} get away", "don't lose {o}", "keep {o} close", "stay next to {o}", "trail {o}",
          "stay on {o}'s tail", "keep following {o}", "go wherever {o} goes", "keep pace with {o}",
          "stay right behind {o}", "stay by {o}'s side", "keep chasing {o}"]
FOLLOW_TAILS = ["", "", "", " wherever it rolls", " wherever it moves", " everywhere it goes", " at all times",
                " no matter where it goes", " as it moves", " around the arena"]
AVOID = ["avoid {o}", "keep away from {o}", "stay away from {o}", "run away from {o}", "flee from {o}",
         "escape {o}", "dodge {o}", "steer clear of {o}", "keep your distance from {o}", "get away from {o}",
         "keep clear of {o}", "don't let {o} touch you", "don't let {o} hit you", "don't get hit by {o}",
         "stay clear of {o}", "keep {o} away from you", "don't go near {o}", "move away from {o}",
         "keep well away from {o}", "don't let {o} near you", "don't let {o} come close", "evade {o}",
         "keep out of {o}'s way", "get out of {o}'s way", "flee {o}", "run from {o}", "shun {o}"]
AVOID_PAD = ["avoid {o}", "keep away from {o}", "stay away from {o}", "keep off {o}", "don't step on {o}",
             "stay off {o}", "steer clear of {o}", "keep clear of {o}", "don't go near {o}", "move away from {o}"]
STOP = ["stop", "halt", "freeze", "stand still", "stay where you are", "don't move", "hold still", "wait here",
        "stay put", "hold your position", "stay right there", "be still", "stop moving", "stop right there",
        "stay still", "hold on", "wait", "stop where you are", "don't budge", "remain where you are",
        "come to a stop", "stand your ground", "stay in place", "hold it right there", "keep still", "pause",
        "stop everything", "hold position", "stay exactly where you are", "stop and wait", "take a break",
        "rest here", "park yourself", "sit tight", "that's far enough", "whoa, stop", "don't go anywhere",
        "stay", "hold fast", "cease moving"]
PREFIXES = ["", "", "", "", "", "please ", "now ", "ok, ", "okay, ", "right, ", "hey robot, ", "robot, ",
            "could you ", "can you ", "would you ", "i want you to ", "i'd like you to ", "go ahead and ",
            "your job is to ", "next, ", "alright, ", "time to ", "let's ", "quick, ", "you should ",
            "please, ", "now, ", "so, ", "hey, ", "listen: ", "new task: ", "task: ", "your task: ",
            "could you please ", "would you kindly ", "i need you to ", "try to ", "be a dear and "]
SUFFIXES = ["", "", "", "", "", " please", " now", " right away", " immediately", ", thanks", ", thank you",
            " quickly", " for me", " as fast as you can", ", okay", " straight away", " at once", " asap"]
SWITCH_PREFIXES = ["actually, ", "actually ", "change of plan: ", "wait, ", "never mind, ", "instead, ",
                   "forget that, ", "scratch that, ", "new plan: ", "hold on, ", "on second thought, ",
                   "no, ", "sorry, ", "change of plans, ", "stop that and "]
SWITCH_SUFFIXES = [" instead", " now", " instead of that", " rather"]
CHATTER = ["it is a sunny day in the arena", "i had coffee this morning", "the weather is nice", "what a day",
           "i like the colours here", "you are doing great", "this arena is quite big", "hello there",
           "the ball looks fun", "my cat is asleep", "i just got back from lunch", "nice work so far",
           "the pads look shiny today", "i wonder what time it is", "good morning", "look at all these colours",
           "the floor is very clean", "we are testing you today", "don't worry about the score",
           "this is your second task", "the red pad was painted yesterday", "someone left the ball here"]
CHATTER_JOINERS = [". anyway, ", ". anyway: ", ", but ", ". now ", ". so ", "; ", ". ", ". please ", ", so ",
                   ". moving on: ", ". okay: ", ". that said, "]
PURE_CHATTER = ["hello", "how are you", "what is your name", "tell me a joke", "what's the weather like",
                "good morning robot", "do you like the ball", "i am bored", "nice to meet you", "what can you do",
                "are you there", "thanks", "lovely day", "what colour is the sky", "how old are you",
                "sing me something", "is it lunch time", "who made you", "what do you think about pads"]
IMPOSSIBLE_ACTIONS = ["fly", "fly to the moon", "jump over the ball", "jump", "pick up the ball", "pick up the {c} pad",
                      "sing a song", "dance", "climb the wall", "swim", "open the door", "paint the {c} pad blue",
                      "throw the ball", "carry the ball to the {c} pad", "kick the ball into the goal",
                      "bring me the ball", "teleport", "dig a hole", "turn into a bird", "leave the arena",
                      "go through the wall", "break the wall", "lift the {c} pad", "make the ball stop",
                      "count to ten", "write a poem", "take a photo", "switch off the lights", "cook dinner",
                      "grow taller", "split in two", "go to sleep", "call my mother", "play the piano",
                      "fetch me a coffee", "move the {c} pad to the corner", "stack the pads", "hide under the pad",
                      "juggle", "spin the ball", "go upstairs", "jump onto the wall"]
VAGUE = ["go over there", "go there", "go to it", "go to that one", "do the thing", "go to the other one",
         "do it", "move it", "go to the usual place", "you know what to do", "get that", "go to that pad",
         "go to the pad", "go somewhere", "do something", "over there please", "that one", "go to this",
         "go to where i pointed", "go to the one i mean"]
SEQ_JOINERS = [", then ", " and then ", ", and then ", ". then ", ", after that ", ". after that, ", " then ",
               ", next ", "; then ", ", followed by ", " and afterwards ", ". afterwards ", ", and after that ",
               " before you ", ". next, ", ", and next "]
SEQ_FIRSTS = ["", "", "", "first ", "first, ", "to begin, ", "to start, "]
SEQ_LASTS = [", and finally ", ", and lastly ", ", then finally ", " and finally ", ", and last "]
NEGATION = ["{want}, not {other}", "not {other} but {want}", "don't go to {other}, go to {want_obj} instead",
            "{want}. not {other}", "not {other}; {want}", "{want}, not the {oc} one",
            "skip {other} and {want}", "forget {other}, {want}", "{want} rather than {other}",
            "never mind {other}, {want}", "{want} and ignore {other}", "ignore {other} and {want}"]
DISTRACT = ["ignore the ball and {x}", "forget about the ball and {x}", "the {oc} pad is nice but {x}",
            "don't worry about the {oc} pad, {x}", "the ball is rolling around; {x}", "never mind the ball, {x}",
            "the {oc} pad looks good, but {x}", "whatever the ball does, {x}", "regardless of the ball, {x}",
            "without bothering about the {oc} pad, {x}", "the ball doesn't matter, {x}",
            "i know the {oc} pad is closer but {x}", "there's a ball somewhere, just {x}"]


@dataclass(frozen=True)
class Generated:
    """One instruction with its intent and where it came from."""

    text: str
    intent: str
    template: str
    kind: str


HELD_OUT = frozenset({"goto_pad.ref_one", "follow.tail", "stop.idiom", "seq.reverse",
                      "move.adverb", "cannot.vague", "distract.chatter"})
"""Template ids left out of training: the datasheet scores them apart (new wordings of known requests).
Each is a wording of calls that other, trained templates also ask for: holding out a call's only template
(as "avoid.pad" once was) takes the call out of training, not a wording."""


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _pad_phrase(rng, colour: str) -> str:
    return f"the {_pick(rng, COLOUR_WORDS[colour])} {_pick(rng, PAD_NOUNS)}"


SAFE_PREFIXES = ["", "", "", "please ", "now ", "ok, ", "okay, ", "right, ", "hey robot, ", "robot, ", "alright, ",
                 "next, ", "listen: ", "new task: ", "hey, ", "so, "]
"""Prefixes that fit any clause (a negative or an idiom: "please don't move", not "time to don't move")."""


def _dress(rng, core: str, plain: bool = False) -> str:
    if plain:
        return core
    verbless = core.startswith(("don't", "do not", "not ", "that's", "whoa", "no ", "never")) or "," in core[:12]
    return f"{_pick(rng, SAFE_PREFIXES if verbless else PREFIXES)}{core}{_pick(rng, SUFFIXES)}"


class Grammar:
    """Samples instructions of every kind, each with its intent."""

    def __init__(self) -> None:
        self.kinds: dict[str, Callable[[np.random.Generator], Generated]] = {
            "move": self.move, "goto_pad": self.goto_pad, "goto_ball": self.goto_ball, "follow": self.follow,
            "avoid": self.avoid, "stop": self.stop, "sequence": self.sequence, "negation": self.negation,
            "distractor": self.distractor, "switch": self.switch, "cannot": self.cannot,
        }

    # -------------------------------------------------------------- single requests
    def move(self, rng) -> Generated:
        direction = _pick(rng, list(DIRECTIONS))
        word = _pick(rng, DIRECTIONS[direction])
        if rng.random() < 0.15:  # adverbial: "northward!", "up you go"
            core, tid = _pick(rng, [f"{word}!", f"{word} you go", f"off you go {word}", f"{word}, go"]), "move.adverb"
        else:
            core, tid = f"{_pick(rng, MOVE_VERBS)} {word}", "move.verb"
        return Generated(normalise(_dress(rng, core)), f"move({direction})", tid, "move")

    def _pad_reference(self, rng) -> tuple[str, str, str]:
        """(phrase, pad name, template id): "the red pad", "the crimson tile", sometimes "the red one"."""
        colour = _pick(rng, COLOURS)
        if rng.random() < 0.1:
            return f"the {_pick(rng, COLOUR_WORDS[colour])} one", f"{colour}_pad", "goto_pad.ref_one"
        return _pad_phrase(rng, colour), f"{colour}_pad", "goto_pad.colour"

    def goto_pad(self, rng) -> Generated:
        phrase, pad, tid = self._pad_reference(rng)
        return Generated(normalise(_dress(rng, f"{_pick(rng, GOTO_VERBS)} {phrase}")), f"go_to({pad})", tid, "goto_pad")

    def goto_ball(self, rng) -> Generated:
        ball = _pick(rng, ["the ball", "the ball", "the ball", "that ball", "the rolling ball", "the sphere"])
        return Generated(normalise(_dress(rng, f"{_pick(rng, BALL_VERBS)} {ball}")), "go_to(ball)", "goto_ball.verb", "goto_ball")

    def follow(self, rng) -> Generated:
        ball = _pick(rng, ["the ball", "the ball", "the ball", "that ball", "the rolling ball"])
        tail = _pick(rng, FOLLOW_TAILS)
        core = _pick(rng, FOLLOW).format(o=ball) + tail
        tid = "follow.tail" if tail else "follow.verb"
        return Generated(normalise(_dress(rng, core)), "follow(ball)", tid, "follow")

    def avoid(self, rng) -> Generated:
        if rng.random() < 0.15:
            colour = _pick(rng, COLOURS)
            core = _pick(rng, AVOID_PAD).format(o=_pad_phrase(rng, colour))
            return Generated(normalise(_dress(rng, core)), f"avoid({colour}_pad)", "avoid.pad", "avoid")
        ball = _pick(rng, ["the ball", "the ball", "the ball", "that ball", "the rolling ball"])
        return Generated(normalise(_dress(rng, _pick(rng, AVOID).format(o=ball))), "avoid(ball)", "avoid.ball", "avoid")

    def stop(self, rng) -> Generated:
        core = _pick(rng, STOP)
        idioms = ["hold your horses", "stay right where you are", "freeze right there", "don't you move",
                  "not another step", "stay rooted to the spot", "halt right there", "hold it"]
        tid = "stop.verb"
        if rng.random() < 0.15:
            core, tid = _pick(rng, idioms), "stop.idiom"
        return Generated(normalise(_dress(rng, core)), "stop", tid, "stop")

    # -------------------------------------------------------------- compositions
    def _step(self, rng, allow_durative: bool) -> tuple[str, str]:
        """A sequence step: (clause, call)."""
        r = rng.random()
        if r < 0.6:
            phrase, pad, _ = self._pad_reference(rng)
            return f"{_pick(rng, GOTO_VERBS)} {phrase}", f"go_to({pad})"
        if r < 0.75:
            return f"{_pick(rng, BALL_VERBS)} the ball", "go_to(ball)"
        if r < 0.88 or not allow_durative:
            d = _pick(rng, list(DIRECTIONS))
            return f"{_pick(rng, MOVE_VERBS)} {_pick(rng, DIRECTIONS[d])}", f"move({d})"
        g = _pick(rng, [self.follow, self.avoid, self.stop])(rng)
        return g.text, g.intent

    def sequence(self, rng) -> Generated:
        n = 3 if rng.random() < 0.3 else 2
        steps = [self._step(rng, allow_durative=(i == n - 1)) for i in range(n)]
        for i in range(1, n):  # the same pad twice in a row says nothing
            while steps[i][1] == steps[i - 1][1]:
                steps[i] = self._step(rng, allow_durative=(i == n - 1))
        intent = "; ".join(call for _, call in steps)
        if n == 2 and rng.random() < 0.15 and steps[1][1].startswith(("go_to", "move")):
            a, b = steps
            text = _pick(rng, [f"{b[0]}, but first {a[0]}", f"before you {b[0]}, {a[0]}",
                               f"{b[0]} after you {a[0]}", f"{b[0]}, but before that {a[0]}"])
            return Generated(normalise(_dress(rng, text)), intent, "seq.reverse", "sequence")
        if n == 2 and rng.random() < 0.25 and all(c.startswith("go_to(") and c != "go_to(ball)" for _, c in steps):
            a, b = (call[6:-1].replace("_pad", "") for _, call in steps)
            pad = _pick(rng, PAD_NOUNS)
            text = _pick(rng, [f"{_pick(rng, GOTO_VERBS)} the {a} {pad}, then the {b} one",
                               f"{_pick(rng, GOTO_VERBS)} the {a} {pad} and then the {b} {pad}",
                               f"visit the {a} and the {b} {pad}s, in that order",
                               f"{_pick(rng, GOTO_VERBS)} the {a} {pad}, and after that the {b} {pad}"])
            return Generated(normalise(_dress(rng, text)), intent, "seq.elided", "sequence")
        text = _pick(rng, SEQ_FIRSTS) + steps[0][0]
        for i, (clause, _) in enumerate(steps[1:], start=1):
            joiner = _pick(rng, SEQ_LASTS) if i == n - 1 and n == 3 and rng.random() < 0.5 else _pick(rng, SEQ_JOINERS)
            if joiner.strip() == "before you":  # "a before you b" reverses the order
                joiner = ", then "
            text += joiner + clause
        return Generated(normalise(_dress(rng, text)), intent, f"seq.{n}", "sequence")

    def negation(self, rng) -> Generated:
        want, other = rng.choice(COLOURS, size=2, replace=False)
        noun = _pick(rng, PAD_NOUNS)
        if rng.random() < 0.25:  # between skills: "don't follow the ball, avoid it"
            pairs = [("follow the ball", "avoid(ball)", "avoid it"), ("avoid the ball", "follow(ball)", "follow it"),
                     ("chase the ball", "avoid(ball)", "stay away from it"), ("stop", "move(north)", "keep going north"),
                     ("go to the ball", "avoid(ball)", "keep away from it"), ("move", "stop", "stay where you are")]
            no, intent, yes = pairs[int(rng.integers(len(pairs)))]
            text = _pick(rng, [f"don't {no}, {yes}", f"do not {no}; {yes}", f"don't {no}. {yes} instead"])
            return Generated(normalise(_dress(rng, text)), intent, "neg.skill", "negation")
        template = _pick(rng, NEGATION)
        text = template.format(want=f"{_pick(rng, GOTO_VERBS)} the {want} {noun}", other=f"the {other} {noun}",
                               want_obj=f"the {want} {noun}", oc=other)
        return Generated(normalise(_dress(rng, text, plain=True)), f"go_to({want}_pad)", "neg.pad", "negation")

    def distractor(self, rng) -> Generated:
        inner = _pick(rng, [self.goto_pad, self.goto_pad, self.avoid, self.follow, self.move, self.stop, self.goto_ball])(rng)
        if rng.random() < 0.5:
            text, tid = f"{_pick(rng, CHATTER)}{_pick(rng, CHATTER_JOINERS)}{inner.text}", "distract.chatter"
        else:
            other = _pick(rng, [c for c in COLOURS if f"({c}_pad)" not in inner.intent])
            text, tid = _pick(rng, DISTRACT).format(x=inner.text, oc=other), "distract.clause"
        return Generated(normalise(text), inner.intent, tid, "distractor")

    def switch(self, rng) -> Generated:
        inner = _pick(rng, [self.goto_pad, self.goto_pad, self.avoid, self.follow, self.move, self.stop, self.goto_ball])(rng)
        text = f"{_pick(rng, SWITCH_PREFIXES)}{inner.text}"
        if rng.random() < 0.4:
            text += _pick(rng, SWITCH_SUFFIXES)
        return Generated(normalise(text), inner.intent, "switch.prefix", "switch")

    def cannot(self, rng) -> Generated:
        r = rng.random()
        if r < 0.35:
            colour = _pick(rng, ABSENT_COLOURS)
            verb = _pick(rng, GOTO_VERBS + ["follow", "avoid", "stay away from"])
            return Generated(normalise(_dress(rng, f"{verb} the {colour} {_pick(rng, PAD_NOUNS)}")), "cannot",
                             "cannot.absent_pad", "cannot")
        if r < 0.5:
            verb = _pick(rng, GOTO_VERBS + ["follow", "chase", "avoid"])
            return Generated(normalise(_dress(rng, f"{verb} the {_pick(rng, ABSENT_THINGS)}")), "cannot",
                             "cannot.absent_thing", "cannot")
        if r < 0.75:
            action = _pick(rng, IMPOSSIBLE_ACTIONS).format(c=_pick(rng, COLOURS))
            return Generated(normalise(_dress(rng, action)), "cannot", "cannot.action", "cannot")
        if r < 0.88:
            return Generated(normalise(_dress(rng, _pick(rng, VAGUE))), "cannot", "cannot.vague", "cannot")
        return Generated(normalise(_pick(rng, PURE_CHATTER)), "cannot", "cannot.chatter", "cannot")

    def sample(self, rng, kind: str | None = None, weights: dict[str, float] | None = None) -> Generated:
        """One instruction of ``kind`` (or of a kind drawn by ``weights``)."""
        if kind is None:
            names = list(weights or self.kinds)
            p = np.array([(weights or {}).get(k, 1.0) for k in names], dtype=float)
            kind = names[int(rng.choice(len(names), p=p / p.sum()))]
        return self.kinds[kind](rng)
