"""World state -> text encoders."""

from flexrl.encoders.text import EncoderConfig, EventTracker, encode

__all__ = ["EncoderConfig", "EventTracker", "encode"]
