"""Hypothesis strategies for serve request bodies: arbitrary JSON, with lone surrogates among the characters."""

from __future__ import annotations

from hypothesis import strategies as st

# json.dumps writes lone surrogates as \ud800-style escapes, which a server must refuse cleanly.
TEXT = st.text(st.characters(codec=None) | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)


def shaped(model, base: dict) -> st.SearchStrategy:
    """Request-shaped bodies: ``base`` with some fields of ``model`` (or an unknown one) set to arbitrary JSON."""
    keys = st.sampled_from([*model.model_fields, "junk"])
    return st.dictionaries(keys, JSON | TEXT, max_size=4).map(lambda changes: {**base, **changes})
