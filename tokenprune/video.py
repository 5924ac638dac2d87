"""Video loading for VLM processors: decord (the design card's reader), PyAV as the fallback.

    clip = load_video("clip.mp4", num_frames=16)            # uniform over the (start, end) window
    clip = load_video("clip.mp4", fps=2.0, max_frames=64)   # by time, at most 64 frames
    inputs = processor(videos=[clip.frames], text=..., return_tensors="pt")

Every failure is an :class:`~tokenprune.errors.InputError` naming the argument: a missing or unreadable file, a
video with no frames, ``num_frames``/``fps``/``max_frames`` out of range, a window outside the video, or more frames
requested than allowed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import InputError

BACKENDS = ("auto", "decord", "pyav")


@dataclass
class VideoClip:
    """``frames``: ``[T, H, W, 3]`` uint8 RGB; ``timestamps``: seconds of each frame; ``fps``: the file's frame
    rate; ``indices``: the frame numbers read; ``backend``: the reader used."""

    frames: np.ndarray
    timestamps: list[float]
    fps: float
    indices: list[int]
    backend: str

    @property
    def seconds_per_frame(self) -> float:
        """Mean time between the sampled frames (Qwen2.5-VL's ``second_per_grid_ts`` is this × temporal patch)."""
        if len(self.timestamps) < 2:
            return 1.0 / self.fps if self.fps > 0 else 0.0
        return (self.timestamps[-1] - self.timestamps[0]) / (len(self.timestamps) - 1)


def sample_indices(total: int, fps: float, num_frames: int | None = None, sample_fps: float | None = None,
                   start: float | None = None, end: float | None = None, max_frames: int = 64) -> list[int]:
    """Frame numbers to read from a video of ``total`` frames at ``fps``: ``num_frames`` spread uniformly over the
    window ``[start, end)`` seconds, or one every ``1 / sample_fps`` seconds (at most ``max_frames``)."""
    if total <= 0:
        raise InputError("path: the video has no frames")
    if num_frames is not None and sample_fps is not None:
        raise InputError("num_frames/fps: give one way of sampling, not both")
    if max_frames < 1:
        raise InputError(f"max_frames: got {max_frames}; allowed: >= 1")
    first = 0 if start is None else int(round(start * fps))
    last = total if end is None else min(total, int(round(end * fps)))
    if start is not None and start < 0 or first >= total:
        raise InputError(f"start: got {start}; allowed: 0 <= start < {total / fps:.3f} s (the video's length)")
    if last <= first:
        raise InputError(f"end: got {end}; allowed: > start ({start or 0} s)")
    if sample_fps is not None:
        if not sample_fps > 0:
            raise InputError(f"fps: got {sample_fps}; allowed: > 0")
        step = fps / sample_fps
        idx = [int(first + k * step) for k in range(int((last - first) / step) or 1)]
        if len(idx) > max_frames:
            raise InputError(f"fps: {sample_fps} gives {len(idx)} frames in the window; allowed: at most max_frames "
                             f"= {max_frames} (lower fps or shorten the window)")
        return idx
    n = min(max_frames, last - first) if num_frames is None else num_frames
    if n < 1:
        raise InputError(f"num_frames: got {num_frames}; allowed: >= 1")
    if n > max_frames:
        raise InputError(f"num_frames: got {n}; allowed: at most max_frames = {max_frames}")
    return np.linspace(first, last - 1, n).round().astype(int).tolist()


def load_video(path: str | os.PathLike, num_frames: int | None = None, fps: float | None = None, max_frames: int = 64,
               start: float | None = None, end: float | None = None, size: Sequence[int] | None = None,
               backend: str = "auto") -> VideoClip:
    """Reads ``path`` and samples frames (see :func:`sample_indices`); ``size=(h, w)`` resizes every frame."""
    if backend not in BACKENDS:
        raise InputError(f"backend: got {backend!r}; allowed: {', '.join(BACKENDS)}")
    path = os.fspath(path)  # decord takes only str
    if not os.path.isfile(path):
        raise InputError(f"path: {path!r} is not a file")
    readers = {"decord": _decord, "pyav": _pyav}
    order = [backend] if backend != "auto" else ["decord", "pyav"]
    errors = []
    for name in order:
        try:
            frames, file_fps, idx = readers[name](path, num_frames, fps, max_frames, start, end)
        except ImportError as e:
            errors.append(f"{name}: not installed ({e})")
            continue
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001 - each reader raises its own types for a corrupt file
            errors.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        if size is not None:
            frames = _resize(frames, size)
        return VideoClip(frames, [i / file_fps for i in idx], file_fps, idx, name)
    raise InputError(f"path: cannot read {path!r} as a video ({'; '.join(errors)}); install decord "
                     f"(pip install 'tokenprune[video]') or PyAV")


def _decord(path: str, num_frames, fps, max_frames, start, end) -> tuple[np.ndarray, float, list[int]]:
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0))
    file_fps = float(vr.get_avg_fps()) or 1.0
    idx = sample_indices(len(vr), file_fps, num_frames, fps, start, end, max_frames)
    return vr.get_batch(idx).asnumpy(), file_fps, idx


def _pyav(path: str, num_frames, fps, max_frames, start, end) -> tuple[np.ndarray, float, list[int]]:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        file_fps = float(stream.average_rate or stream.guessed_rate or 1.0)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    idx = sample_indices(len(frames), file_fps, num_frames, fps, start, end, max_frames)
    return np.stack([frames[i] for i in idx]), file_fps, idx


def _resize(frames: np.ndarray, size: Sequence[int]) -> np.ndarray:
    from PIL import Image

    h, w = (int(x) for x in size)
    if h < 1 or w < 1:
        raise InputError(f"size: got {tuple(size)}; allowed: (height, width) >= 1")
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in frames])
