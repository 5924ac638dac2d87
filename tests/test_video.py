"""Video loading: synthetic mp4s written with PyAV, read back with decord and PyAV."""
import numpy as np
import pytest

from tokenprune import InputError
from tokenprune.video import load_video, sample_indices

av = pytest.importorskip("av")


def write_mp4(path, frames: int = 20, fps: int = 10, size=(64, 48)):
    """Frame k is a flat grey of level 10·k (so a decoded frame tells its number) with a white square moving right."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.options = {"crf": "0", "preset": "ultrafast"}
        for k in range(frames):
            img = np.full((size[1], size[0], 3), 10 * k, dtype=np.uint8)
            img[8:16, 2 * k:2 * k + 8] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return str(path)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_mp4(tmp_path_factory.mktemp("video") / "clip.mp4")


def _levels(frames):
    return [int(round(float(np.median(f[30:, :, 0])) / 10)) for f in frames]


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_uniform_frames_and_timestamps(clip, backend):
    pytest.importorskip(backend if backend == "decord" else "av")
    c = load_video(clip, num_frames=5, backend=backend)
    assert c.backend == backend and c.frames.shape == (5, 48, 64, 3) and c.fps == pytest.approx(10)
    assert c.indices == [0, 5, 10, 14, 19]
    assert _levels(c.frames) == c.indices  # the decoded frames are the ones named
    assert c.timestamps == pytest.approx([0.0, 0.5, 1.0, 1.4, 1.9])


def test_fps_window_and_resize(clip):
    c = load_video(clip, fps=2.0, start=0.5, end=1.5, size=(28, 56))
    assert c.indices == [5, 10] and c.frames.shape == (2, 28, 56, 3)
    assert c.seconds_per_frame == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs, field", [
    (dict(num_frames=0), "num_frames"), (dict(fps=0.0), "fps"), (dict(fps=-1.0), "fps"),
    (dict(num_frames=100, max_frames=64), "num_frames"), (dict(fps=10.0, max_frames=4), "fps"),
    (dict(start=5.0), "start"), (dict(start=1.0, end=0.5), "end"), (dict(backend="ffmpeg"), "backend"),
    (dict(num_frames=2, fps=1.0), "num_frames/fps"), (dict(size=(0, 10)), "size"),
])
def test_bad_arguments(clip, kwargs, field):
    with pytest.raises(InputError, match=f"^{field}"):
        load_video(clip, **kwargs)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="path: .* is not a file"):
        load_video(str(tmp_path / "none.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    with pytest.raises(InputError, match="path: cannot read"):
        load_video(str(bad))


def test_sample_indices_edges():
    assert sample_indices(3, 1.0) == [0, 1, 2]
    assert sample_indices(100, 25.0, num_frames=1) == [0]
    with pytest.raises(InputError, match="no frames"):
        sample_indices(0, 25.0)
