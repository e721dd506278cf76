"""How well each instruction embedder separates the skill intents: nearest-intent accuracy on paraphrases.

A labelled set written here (never read from the benchmark suites, which are evaluation data): one anchor
phrase per intent (12 intents, the hard pair avoid/follow among them) and 6 hand-written paraphrases each.
Figures per embedder:

- anchor acc: fraction of the 72 paraphrases whose nearest anchor (cosine) is their own intent;
- grammar acc: the same on instructions sampled from :class:`flexrl.distill.grammar.Grammar` (single
  requests whose intent is one of the 12), a second, larger and independently written set;
- 1-NN acc: leave-one-out nearest neighbour among the 72 paraphrases (no anchors);
- ms/instr: embedding time in one batch of all texts, and for one text alone (the mean of 20; no cache);
  load: seconds to load the model (first call); size: the model's file on disk;
- avoid~follow, avoid~stay away: cosine of "avoid the ball" to "follow the ball" / to "stay away from
  the ball" (the second should be the larger).

    HF_HUB_OFFLINE=1 python bench/embeddings.py [--smollm2 plain:mean:30,one_word:last:26] [--grammar 600]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from flexrl.data.embeddings import Embedder, HashingEmbedder, MiniLMEmbedder, SmolLM2Embedder, minilm_dir
from flexrl.distill.grammar import Grammar
from flexrl.llm.embedded import embedded_gguf_path
from flexrl.llm.model_loading import load_model

ANCHORS = {
    "go_to(red_pad)": "go to the red pad",
    "go_to(blue_pad)": "go to the blue pad",
    "go_to(green_pad)": "go to the green pad",
    "go_to(yellow_pad)": "go to the yellow pad",
    "go_to(ball)": "go to the ball",
    "follow(ball)": "follow the ball",
    "avoid(ball)": "avoid the ball",
    "stop": "stop",
    "move(north)": "move north",
    "move(south)": "move south",
    "move(east)": "move east",
    "move(west)": "move west",
}
PARAPHRASES = {
    "go_to(red_pad)": ["head over to the red square", "could you make your way to the red tile",
                       "the red pad is where i want you", "walk onto the crimson marker", "reach the red one",
                       "please stand on the red pad"],
    "go_to(blue_pad)": ["drive to the blue square", "your destination is the blue pad", "get yourself onto the blue tile",
                        "navigate over to the navy mat", "blue pad, go there now", "touch the blue pad please"],
    "go_to(green_pad)": ["roll over to the green square", "i'd like you on the green pad",
                         "find the green tile and stand on it", "make for the emerald marker", "green pad, please",
                         "travel to where the green pad is"],
    "go_to(yellow_pad)": ["head for the yellow square", "go and stand on the yellow tile", "the yellow pad is your target",
                          "move onto the golden mat", "get to the yellow one", "yellow pad, now"],
    "go_to(ball)": ["touch the ball", "go and tag the ball", "bump into the ball once", "make contact with the ball",
                    "get over to where the ball is", "reach the ball"],
    "follow(ball)": ["chase the ball", "keep up with the ball wherever it rolls", "stay close to the ball",
                     "go after the ball", "shadow the ball around the arena", "don't let the ball get away from you"],
    "avoid(ball)": ["stay away from the ball", "keep your distance from the ball", "don't let the ball touch you",
                    "run from the ball", "steer clear of the ball", "dodge the ball"],
    "stop": ["halt", "stand still", "freeze right there", "don't move", "stay where you are",
             "that's enough, hold your position"],
    "move(north)": ["go up", "head northward", "travel towards the top of the arena", "walk north a bit", "move upwards",
                    "go toward the top wall"],
    "move(south)": ["go down", "head southward", "travel toward the bottom of the arena", "move downwards",
                    "walk south a little", "go toward the bottom wall"],
    "move(east)": ["go right", "head eastward", "move to the right", "travel east", "walk towards the right wall",
                   "shift over to the right side"],
    "move(west)": ["go left", "head westward", "move to the left", "travel west", "walk towards the left wall",
                   "shift over to the left side"],
}
GRAMMAR_KINDS = ("move", "goto_pad", "goto_ball", "follow", "avoid", "stop")
AVOID, FOLLOW, STAY_AWAY = "avoid the ball", "follow the ball", "stay away from the ball"


def grammar_set(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` single-request instructions from the distillation grammar, kept when their intent is an anchor's."""
    grammar, rng = Grammar(), np.random.default_rng(seed)
    out = []
    while len(out) < n:
        generated = grammar.sample(rng, GRAMMAR_KINDS[len(out) % len(GRAMMAR_KINDS)])
        if generated.intent in ANCHORS:
            out.append((generated.text, generated.intent))
    return out


def measure(embedder: Embedder, grammar: list[tuple[str, str]]) -> dict[str, float]:
    """The figures of one embedder (see the module docstring)."""
    labels = list(ANCHORS)
    texts = [text for label in labels for text in PARAPHRASES[label]]
    y = np.array([labels.index(label) for label in labels for _ in PARAPHRASES[label]])
    start = time.perf_counter()
    embedder.embed(["warm up"])
    load = time.perf_counter() - start
    start = time.perf_counter()
    every = embedder.embed([ANCHORS[label] for label in labels] + texts + [text for text, _ in grammar])
    batch_ms = 1e3 * (time.perf_counter() - start) / len(every)
    start = time.perf_counter()
    for text in texts[:20]:
        embedder.embed([text])
    single_ms = 1e3 * (time.perf_counter() - start) / 20
    anchors, paraphrases, sampled = np.split(every, [len(labels), len(labels) + len(texts)])
    neighbours = paraphrases @ paraphrases.T
    np.fill_diagonal(neighbours, -np.inf)
    pair = embedder.embed([AVOID, FOLLOW, STAY_AWAY])
    return {
        "anchor": float(((paraphrases @ anchors.T).argmax(1) == y).mean()),
        "grammar": float(((sampled @ anchors.T).argmax(1) == [labels.index(i) for _, i in grammar]).mean()),
        "nn": float((y[neighbours.argmax(1)] == y).mean()),
        "batch_ms": batch_ms, "single_ms": single_ms, "load_s": load,
        "follow": float(pair[0] @ pair[1]), "stay": float(pair[0] @ pair[2]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smollm2", default="plain:mean:30,instruction:mean:20,one_word:last:20,one_word:last:26,"
                        "one_word:last:30", help="SmolLM2 variants, prompt:pooling:layer, comma-separated")
    parser.add_argument("--grammar", type=int, default=600, help="instructions sampled from the grammar")
    args = parser.parse_args()
    torch.set_num_threads(1)
    grammar = grammar_set(args.grammar)
    gguf = embedded_gguf_path()
    smollm2 = load_model()  # shared by the variants; its load is timed once, here
    candidates: list[tuple[Embedder, float, str]] = [
        (SmolLM2Embedder(int(layer), prompt, pooling, smollm2), smollm2.load_seconds,
         f"{gguf.stat().st_size / 1e6:.0f} MB (GGUF)")
        for prompt, pooling, layer in (variant.split(":") for variant in args.smollm2.split(","))
    ]
    weights = Path(minilm_dir()) / "model.safetensors"
    candidates += [(MiniLMEmbedder(), None, f"{weights.stat().st_size / 1e6:.0f} MB"), (HashingEmbedder(), None, "0")]
    print(f"{len(ANCHORS)} intents, {sum(map(len, PARAPHRASES.values()))} paraphrases, {len(grammar)} grammar "
          f"instructions; 1 torch thread\n")
    print("| embedder | dim | anchor acc | grammar acc | 1-NN acc | ms/instr (batch) | ms (one) | load s | size "
          "| avoid~follow | avoid~stay away |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for embedder, load_s, size in candidates:
        m = measure(embedder, grammar)
        load = m["load_s"] if load_s is None else load_s
        print(f"| {embedder.name} | {embedder.dim} | {m['anchor']:.1%} | {m['grammar']:.1%} | {m['nn']:.1%} "
              f"| {m['batch_ms']:.2f} | {m['single_ms']:.1f} | {load:.1f} | {size} | {m['follow']:.3f} "
              f"| {m['stay']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
