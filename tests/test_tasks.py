"""The paper's other tasks as features: `dnerv decode --fps-scale` (tasks/interpolate.py) and
`dnerv encode --mask` (tasks/masks.py), and benchmarks/tasks.py in CI-sized form."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dnerv_codec.cli import main
from dnerv_codec.codec import DecodedFile, EncodeOptions, encode
from dnerv_codec.errors import BudgetError, InputError
from dnerv_codec.format.budget import Limits
from dnerv_codec.format.chunks import DnvReader, pack_chunked
from dnerv_codec.format.container import read_head
from dnerv_codec.io import Video, read_video, write_png
from dnerv_codec.metrics import PSNR_CAP_DB, psnr_rgb, quality_report
from dnerv_codec.tasks import interpolate, masks
from dnerv_codec.training.loop import FrameSource

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
ONE = (DATA / "bunny-0.1bpp-learned.dnv").read_bytes()  # a real 48-frame file
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decode_all(data: bytes, **kw) -> np.ndarray:
    return np.stack(list(DecodedFile(DnvReader(data), device="cpu", **kw).frames()))


# ----------------------------------------------------------------------------- interpolation


def test_positions_put_k_minus_1_in_betweens_after_every_frame_but_the_last():
    assert list(interpolate.positions(0, 3, 2)) == [0, 0.5, 1, 1.5, 2]
    assert list(interpolate.positions(4, 6, 4)) == [4, 4.25, 4.5, 4.75, 5]
    assert list(interpolate.positions(7, 8, 3)) == [7]
    for n, k in [(1, 2), (5, 2), (48, 3), (10, 16)]:
        assert len(list(interpolate.positions(0, n, k))) == interpolate.output_count(n, k) == (n - 1) * k + 1


def test_embeddings_between_frames_are_linear_and_stored_ones_exact():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(3, 2, 4, 5)).astype(np.float32)
    assert np.array_equal(interpolate.embedding_rows(e, np.array([2, 0]), 0, 4), e[[2, 0]])
    got = interpolate.embedding_rows(e, np.array([0.0, 0.25, 1.0, 2.0]), 1, 3)
    assert np.array_equal(got[0], e[0, :, 1:3]) and np.array_equal(got[2], e[1, :, 1:3])
    assert np.array_equal(got[3], e[2, :, 1:3])
    np.testing.assert_allclose(got[1], 0.75 * e[0, :, 1:3] + 0.25 * e[1, :, 1:3], rtol=1e-6)


def test_the_baselines_repeat_and_blend_the_stored_frames():
    stored = np.stack([np.full((2, 2, 3), v, np.uint8) for v in (0, 100, 200)])
    assert [int(f[0, 0, 0]) for f in interpolate.repeated(stored, 2)] == [0, 0, 100, 100, 200]
    assert [int(f[0, 0, 0]) for f in interpolate.blended(stored, 4)] == [
        0, 25, 50, 75, 100, 125, 150, 175, 200]


def test_fps_scale_keeps_the_stored_frames_and_doubles_the_rate(tmp_path, capsys):
    path = tmp_path / "in.dnv"
    path.write_bytes(ONE)
    assert main(["decode", str(path), "-o", str(tmp_path / "x1.y4m")]) == 0
    assert main(["decode", str(path), "-o", str(tmp_path / "x2.y4m"), "--fps-scale", "2"]) == 0
    err = capsys.readouterr().err
    assert "decoded 95 frames (48 stored + 47 interpolated)" in err and "@ 50 fps" in err
    one, two = read_video(tmp_path / "x1.y4m"), read_video(tmp_path / "x2.y4m")
    assert two.fps == 2 * one.fps == 50 and len(two.frames) == 95
    # the stored frames land at their own times, bit for bit; the in-betweens are new frames
    assert np.array_equal(two.frames[0::2], one.frames)
    between = two.frames[1::2]
    assert all(not np.array_equal(b, one.frames[i]) and not np.array_equal(b, one.frames[i + 1])
               for i, b in enumerate(between[:8]))
    # ... that lie between their neighbours: closer to the midpoint blend than either end is
    blend = interpolate.blended(one.frames[:9], 2)[1::2]
    assert psnr_rgb(blend, between[:8])["mean"] > psnr_rgb(blend, one.frames[:8])["mean"]


def test_fps_scale_with_a_range_and_across_a_chunk_boundary_blends_pixels():
    head = read_head(ONE)
    video = {k: head[k] for k in ("width", "height", "fps_num", "fps_den")}
    two = pack_chunked({**video, "frame_count": 96}, [(ONE, 30.0), (ONE, None)])
    plain = decode_all(two, start=46, stop=50)
    got = decode_all(two, start=46, stop=50, fps_scale=2)
    assert len(got) == 7 and np.array_equal(got[0::2], plain)
    # frame 47 ends chunk 1 and frame 48 starts chunk 2: their networks differ, pixels blend
    assert np.array_equal(got[3], interpolate.blend(plain[1], plain[2], 0.5))
    assert not np.array_equal(got[1], interpolate.blend(plain[0], plain[1], 0.5))


def test_fps_scale_is_priced_before_decoding():
    reader = DnvReader(ONE)
    work = DecodedFile.cost_of(reader).work
    DecodedFile(reader, limits=Limits(work=work))  # the plain decode fits exactly
    with pytest.raises(BudgetError, match="95 frames"):
        DecodedFile(reader, limits=Limits(work=work), fps_scale=2)


def test_the_first_frames_of_a_long_file_come_without_listing_them_all(tmp_path):
    """2x2 frames, 1,500,000 of them, x16 under --fps-scale 16, in a few hundred bytes: the
    first frames come in the memory the decode was priced at (the chunk's tensors), whatever
    the frame count. The positions were a list of every output frame, made before the first
    one rendered (10^7 frames x16: MemoryError at 2.6 GB)."""
    import itertools
    import tracemalloc
    sys.path.insert(0, str(Path(__file__).parent))
    import forge
    from dnerv_codec.format.architecture import make_config
    dnv = tmp_path / "long.dnv"
    dnv.write_bytes(forge.forged(make_config(2, 2, 4), 2, 2, 1_500_000))
    with DnvReader.open(str(dnv)) as reader:  # 2.4e7 frames, within the default work limit
        decoded = DecodedFile(reader, device="cpu", fps_scale=16)
        assert decoded.output_frames == 1_499_999 * 16 + 1
        tracemalloc.start()
        try:
            first = list(itertools.islice(decoded.frames(), 40))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert len(first) == 40 and all(f.shape == (2, 2, 3) for f in first)
    assert peak < decoded.cost.as_dict()["unpack_bytes"], peak


def test_batches_read_their_indices_a_batch_at_a_time():
    """`batches` takes what it renders from an iterator as it goes (it was a list of every
    index first): a source that refuses to be read past the second batch is never read past
    it."""
    sys.path.insert(0, str(Path(__file__).parent))
    import forge
    from dnerv_codec.codec import DecodedVideo
    from dnerv_codec.format.architecture import make_config
    video = DecodedVideo(forge.forged(make_config(8, 8, 4), 8, 8, 100), device="cpu")
    size = video.plan.batch

    def two_batches():
        yield from range(2 * size)
        raise AssertionError("read past the second batch")
    batches = video.batches(two_batches())
    assert [len(next(batches)), len(next(batches))] == [size, size]
    positions = interpolate.positions(0, 10**9, 16)
    assert [next(positions) for _ in range(3)] == [0, 1 / 16, 2 / 16]


@pytest.mark.parametrize("k", ["0", "17", "1.5"])
def test_a_bad_fps_scale_is_a_usage_error(k, tmp_path, capsys):
    path = tmp_path / "in.dnv"
    path.write_bytes(ONE)
    assert main(["decode", str(path), "-o", str(tmp_path / "x.y4m"), "--fps-scale", k]) == 2
    assert "--fps-scale" in capsys.readouterr().err
    assert not (tmp_path / "x.y4m").exists()


# ----------------------------------------------------------------------------- masks


def test_quality_leaves_the_unknown_pixels_out():
    rng = np.random.default_rng(1)
    ref = rng.integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)
    unknown = np.zeros((8, 8), bool)
    unknown[:4] = True
    dist = ref.copy()
    dist[:, :4] = 255 - dist[:, :4]  # wrong only where unknown
    assert psnr_rgb(masks.with_mask(ref, unknown), dist)["mean"] == PSNR_CAP_DB
    dist[:, 4:] = np.clip(dist[:, 4:].astype(int) + 3, 0, 255)  # and now where known too
    known_only = psnr_rgb(ref[:, 4:], dist[:, 4:])
    report = quality_report(masks.with_mask(ref, unknown), dist)
    assert report["psnr_rgb"] == pytest.approx(known_only["mean"])
    assert report["psnr_rgb_total"] == pytest.approx(known_only["total"])


def test_the_loss_and_the_encoders_never_see_unknown_pixels():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, size=(2, 8, 12, 3), dtype=np.uint8)
    unknown = np.zeros((8, 12), bool)
    unknown[2:5, 3:9] = True
    source = FrameSource(masks.with_mask(frames, unknown), 16, 16, "cpu")
    shown = source.frames[0, :, :8, :12].permute(1, 2, 0).numpy()
    mean = frames[0][~unknown].mean(axis=0).round()
    assert np.array_equal(shown[unknown], np.broadcast_to(mean, shown[unknown].shape))
    assert np.array_equal(shown[~unknown], frames[0][~unknown])
    out = torch.rand(2, 3, 16, 16)
    target = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    error = (out[..., :8, :12] - target).square().permute(0, 2, 3, 1).numpy()
    expected = error[:, ~unknown].mean()
    assert float(source.mse(out, [0, 1])) == pytest.approx(float(expected), rel=1e-5)


def test_what_lies_under_the_mask_changes_nothing_in_the_file(tiny_clip):
    unknown = np.zeros((tiny_clip.height, tiny_clip.width), bool)
    unknown[10:30, 20:60] = True
    other = tiny_clip.frames.copy()
    other[:, unknown] = 255 - other[:, unknown]
    options = EncodeOptions(bpp=2.0, epochs=2, device="cpu")
    files = [encode(masks.MaskedVideo(Video(np.ascontiguousarray(f), tiny_clip.fps),
                                      masks.Mask(unknown[None])), options).data
             for f in (tiny_clip.frames, other)]
    assert files[0] == files[1]
    unmasked = encode(Video(np.ascontiguousarray(other), tiny_clip.fps), options).data
    assert unmasked != files[1]


def _mask_png(tmp_path, unknown: np.ndarray, name="mask.png") -> Path:
    path = tmp_path / name
    write_png(path, np.where(unknown[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2))
    return path


def test_encode_with_a_mask_through_the_cli(tiny_clip, tmp_video, tmp_path, capsys):
    clip = tmp_video(tiny_clip.frames)
    unknown = np.zeros((64, 96), bool)
    unknown[5:20, 60:90] = True
    mask = _mask_png(tmp_path, unknown)
    out, stats = tmp_path / "out.dnv", tmp_path / "s.json"
    assert main(["encode", str(clip), "-o", str(out), "--bpp", "2", "--epochs", "2",
                 "--mask", str(mask), "--json", str(stats), "-q"]) == 0
    err = capsys.readouterr().err
    assert "(known pixels)" in err
    s = json.loads(stats.read_text())
    assert s["mask"]["frames"] == 1
    assert s["mask"]["unknown_fraction"] == pytest.approx(unknown.mean())
    assert main(["decode", str(out), "-o", str(tmp_path / "rec.y4m"), "-q"]) == 0
    assert len(read_video(tmp_path / "rec.y4m").frames) == 6


def test_a_mask_video_gives_each_frame_its_own_mask(tmp_path, tmp_video):
    unknown = np.zeros((3, 32, 48), bool)
    for i in range(3):
        unknown[i, 8:16, 8 * i:8 * i + 16] = True
    path = tmp_video(np.where(unknown[..., None], 255, 0).astype(np.uint8).repeat(3, axis=3),
                     ext=".y4m")
    mask = masks.read_mask(path, 48, 32, 3)
    assert np.array_equal(mask.unknown, unknown)
    assert np.array_equal(mask.frame(2), unknown[2])


@pytest.mark.parametrize("case, message", [
    ("size", "mask '.*' is 48x32 but the video is 96x64"),
    ("frames", "has 2 frames; it needs 1 .* or one for each of the 6 frames"),
    ("grey", "is not a black-and-white mask: .* % of its pixels are grey"),
    ("white", "is white everywhere: nothing of the video would be known"),
    ("black", "is black everywhere: there is nothing to fill"),
    ("white-frame", "frame 2 of the mask '.*' is white everywhere"),
])
def test_bad_masks_are_refused_in_one_line(case, message, tiny_clip, tmp_video, tmp_path, capsys):
    h, w = 64, 96
    frames = {
        "size": np.zeros((1, 32, 48, 3), np.uint8),
        "frames": np.zeros((2, h, w, 3), np.uint8),
        "grey": np.broadcast_to(np.linspace(0, 255, w).astype(np.uint8)[None, None, :, None],
                                (1, h, w, 3)),
        "white": np.full((1, h, w, 3), 255, np.uint8),
        "black": np.zeros((1, h, w, 3), np.uint8),
        "white-frame": np.stack([np.zeros((h, w, 3), np.uint8), np.full((h, w, 3), 255, np.uint8)]
                                + [np.zeros((h, w, 3), np.uint8)] * 4),
    }[case]
    mask = tmp_video(np.ascontiguousarray(frames), ext=".y4m")
    with pytest.raises(InputError, match=message):
        masks.read_mask(mask, w, h, 6)
    if case == "white":  # and through the CLI: one line, exit 2, no output
        clip, out = tmp_video(tiny_clip.frames), tmp_path / "out.dnv"
        assert main(["encode", str(clip), "-o", str(out), "--mask", str(mask)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len([line for line in err if "error" in line]) == 1 and "white everywhere" in err[-1]
        assert not out.exists()


def test_the_paper_masks_are_where_the_paper_puts_them():
    d = masks.disperse(960, 1920)
    assert d.sum() == 5 * 50 * 50 and d[480, 960] and d[240, 480] and d[720, 1440]
    c = masks.central(180, 320)
    assert c.sum() == 45 * 80 and c[90, 160] and not c[0, 0]
    assert masks.disperse(180, 320).sum() == 5 * 9 * 9


# ----------------------------------------------------------------------------- the benchmark


@pytest.fixture(scope="module")
def tasks_run(tmp_path_factory, default_clip):
    from dnerv_codec.io import open_writer
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tasks
    folder = tmp_path_factory.mktemp("tasks")
    clip = folder / "tiny.mp4"
    with open_writer(clip, 96, 64, default_clip.fps) as writer:
        for frame in default_clip.frames[:5, 60:124, 112:208]:
            writer.write(np.ascontiguousarray(frame))
    data = tasks.main([str(clip), "--epochs", "2", "--c2", "4", "--bpp", "2", "--device", "cpu",
                       "--out", str(folder / "results"), "--figures", str(folder / "figures")])
    return tasks, data, folder


def test_tasks_benchmark_runs_every_part_and_writes_its_results(tasks_run):
    tasks, data, folder = tasks_run
    assert data["command"].startswith("python benchmarks/tasks.py ")
    saved = json.loads((folder / "results" / "tasks-tiny.json").read_text())
    assert saved["results"].keys() == set(tasks.PARTS)
    paper = saved["results"]["interp-paper"]
    assert paper["model"] == ["repeat", "blend", "DNeRV", "DNeRV", "HNeRV", "HNeRV"]
    assert paper["embeddings"][2:] == ["hybrid", "codec"] * 2
    assert saved["results"]["interp-decoder"]["in-betweens"] == ["fps-scale 2", "repeat", "blend"]
    assert saved["results"]["inpaint-paper"]["mask"] == ["disperse"] * 2 + ["central"] * 2
    assert saved["results"]["logo"]["encode"] == ["logo left in (input)", "--mask", "no mask"]
    # Plumbing: the tiny run trains too briefly for any floor; every figure must be a measured
    # one (finite). What --fps-scale renders is checked against a baseline above (the
    # in-betweens of the trained file lie closer to the blend of their neighbours than either
    # neighbour does).
    for part in saved["results"].values():
        for key, values in part.items():
            if key.startswith("psnr") or key.startswith("ms-ssim"):
                assert all(np.isfinite(v) for v in values), key
    for path in saved["figures"]:
        assert Path(path).read_bytes().startswith(PNG_MAGIC)
    table = tasks.markdown(saved)
    assert table.count("\n|---") == 4 and "fps-scale 2" in table and "--mask" in table


def test_the_docs_show_the_published_task_tables():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tasks
    published = sorted((ROOT / "benchmarks" / "results").glob("tasks-*.json"))
    assert published, "benchmarks/results has no tasks result"
    page = (ROOT / "docs" / "tasks.md").read_text()
    for path in published:
        data = json.loads(path.read_text())
        assert tasks.markdown(data) in page, f"docs/tasks.md does not show {path.name}"
        assert data["command"] in page
