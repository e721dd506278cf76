"""Episode video: frames with the current instruction and skill drawn on, written as mp4 and gif."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from flexrl.runs.atomic import atomic_write


def annotate(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """Draw text lines on a dark band at the top of the frame."""
    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    band = 4 + 12 * len(lines)
    draw.rectangle([0, 0, img.width, band], fill=(20, 20, 28))
    for i, line in enumerate(lines):
        draw.text((4, 2 + 12 * i), line[: img.width // 6], fill=(240, 240, 240), font=font)
    return np.asarray(img)


class VideoRecorder:
    """Collects frames; :meth:`save` writes ``<stem>.mp4`` and ``<stem>.gif`` atomically.

    Args:
        fps: frames per second of the mp4.
        gif_every: keep every n-th frame in the gif (gifs are large).
    """

    def __init__(self, fps: int = 20, gif_every: int = 2) -> None:
        self.fps, self.gif_every = fps, gif_every
        self.frames: list[np.ndarray] = []

    def add(self, frame: np.ndarray, lines: list[str] | None = None) -> None:
        """Add one frame, with ``lines`` drawn on (None: as it is, e.g. already annotated)."""
        self.frames.append(frame if lines is None else annotate(frame, lines))

    def save(self, stem: str | Path) -> list[Path]:
        """Write mp4 (H.264 via imageio-ffmpeg's bundled binary) and gif; returns the paths."""
        if not self.frames:
            return []
        stem = Path(stem)

        def mp4(tmp: str) -> None:
            with imageio.get_writer(tmp, fps=self.fps, codec="libx264", quality=7, macro_block_size=8) as w:
                for f in self.frames:
                    w.append_data(f)

        def gif(tmp: str) -> None:
            frames = self.frames[:: self.gif_every]
            imageio.mimsave(tmp, frames, format="GIF", duration=1000 * self.gif_every / self.fps, loop=0)

        return [atomic_write(stem.with_suffix(".mp4"), mp4, suffix=".mp4"), atomic_write(stem.with_suffix(".gif"), gif, suffix=".gif")]
