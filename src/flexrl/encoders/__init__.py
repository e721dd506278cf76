"""World state -> text encoders."""

from flexrl.encoders.text import EncoderConfig, EventTracker, encode, fixed_prefix

__all__ = ["EncoderConfig", "EventTracker", "encode", "fixed_prefix"]
