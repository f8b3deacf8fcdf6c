"""fastMRI multicoil files -> the challenge layout: the generator's fastMRI format, the converter, the result in use."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import h5py
import numpy as np
import pytest

import utils.data.convert_fastmri.convert as convert_module
from tests.conftest import SPLIT, fastmri_plus_csvs
from utils.data.challenge_writer import NO_GRAPPA_NOTE
from utils.data.convert_fastmri.convert import MANIFEST_NAME, convert
from utils.data.convert_fastmri.plan import CHALLENGE_SPLIT, MaskSpec, plan_conversion, split_counts
from utils.data.convert_fastmri.sources import SourceVolume
from utils.data.dataset import SliceDataset
from utils.data.layout import parse_volume_name
from utils.data.synthetic.fastmri_format import FASTMRI_MATRICES
from utils.errors import UserInputError
from utils.mri.acs import acs_bounds

REPO = Path(__file__).resolve().parents[1]


def _numpy_rss(kspace: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """RSS of the centred orthonormal IFFT, centre-cropped or zero-padded to ``shape``, with numpy alone."""
    axes = (-2, -1)
    images = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace.astype(np.complex128), axes=axes), norm="ortho"), axes=axes)
    rss = np.sqrt((np.abs(images) ** 2).sum(axis=-3))
    out = np.zeros((*rss.shape[:-2], *shape))
    spans = []
    for size, target in zip(rss.shape[-2:], shape):
        shift = target // 2 - size // 2  # input index size // 2 lands on target // 2
        length = min(size, target)
        spans.append((slice(max(-shift, 0), max(-shift, 0) + length), slice(max(shift, 0), max(shift, 0) + length)))
    out[..., spans[0][1], spans[1][1]] = rss[..., spans[0][0], spans[1][0]]
    return out


def _manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST_NAME).read_text())


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------- the fastMRI format


def test_generator_writes_public_fastmri_multicoil_files(fastmri_dir):
    names = sorted(p.name for p in fastmri_dir.glob("*.h5"))
    assert len(names) == 12
    assert sum(bool(re.fullmatch(r"file1\d{6}\.h5", n)) for n in names) == 6
    assert sum(bool(re.fullmatch(r"file_brain_AX(T1|T1POST|T2|FLAIR)_2\d\d_6\d{6}\.h5", n)) for n in names) == 6
    for path in fastmri_dir.glob("*.h5"):
        anatomy = "brain" if path.name.startswith("file_brain_") else "knee"
        with h5py.File(path, "r") as handle:
            assert sorted(handle.keys()) == ["ismrmrd_header", "kspace", "reconstruction_rss"]
            kspace, target = handle["kspace"][()], handle["reconstruction_rss"][()]
            attrs = dict(handle.attrs)
            header = ElementTree.fromstring(handle["ismrmrd_header"][()])
        assert kspace.dtype == np.complex64 and kspace.ndim == 4
        assert kspace.shape[2:] in [(h, w) for h, w, _ in FASTMRI_MATRICES[anatomy]]
        assert np.abs(kspace).min(axis=(0, 1, 2)).min() > 0  # fully sampled: no empty column
        assert target.dtype == np.float32 and target.shape == (kspace.shape[0], 320, 320)
        np.testing.assert_allclose(target, _numpy_rss(kspace, (320, 320)), atol=1e-5 * target.max())
        assert attrs["max"] == pytest.approx(target.max()) and attrs["norm"] == pytest.approx(np.linalg.norm(target), rel=1e-5)
        assert attrs["acquisition"].startswith("AX" if anatomy == "brain" else "CORPD") and len(attrs["patient_id"]) == 64
        namespace = {"m": "http://www.ismrm.org/ISMRMRD"}
        assert int(header.find("m:encoding/m:encodedSpace/m:matrixSize/m:y", namespace).text) == kspace.shape[3]
        assert header.find("m:encoding/m:reconSpace/m:matrixSize/m:x", namespace).text == "320"


# ---------------------------------------------------------------------------------------- layout and contents


def test_layout_keys_shapes_and_dtypes(converted, fastmri_dir):
    names = sorted(str(p.relative_to(converted)) for p in converted.rglob("*.h5"))
    expected = []
    for anatomy in ("brain", "knee"):
        for acc in (4, 8):
            for split, index in (("train", 1), ("val", 2)):
                expected += [f"{split}/{kind}/{anatomy}_acc{acc}_{index}.h5" for kind in ("image", "kspace")]
            expected += [f"leaderboard/acc{acc}/{kind}/{anatomy}_test1.h5" for kind in ("image", "kspace")]
    assert names == sorted(expected)
    assert not [p for p in converted.rglob("*") if p.name.endswith(".tmp")]
    for kspace_path in converted.rglob("kspace/*.h5"):
        name = parse_volume_name(kspace_path)
        image_path = kspace_path.parent.parent / "image" / kspace_path.name
        with h5py.File(kspace_path, "r") as k, h5py.File(image_path, "r") as i:
            source = fastmri_dir / i.attrs["source"]
            assert ("brain" if source.name.startswith("file_brain_") else "knee") == name.anatomy
            with h5py.File(source, "r") as s:
                assert k["kspace"].shape == s["kspace"].shape and k["kspace"].dtype == np.complex64
                assert i.attrs["acquisition"] == s.attrs["acquisition"]
            assert sorted(k.keys()) == ["kspace", "mask"] and k["mask"].dtype == np.float32
            assert k["mask"].shape == (k["kspace"].shape[-1],)
            assert sorted(i.keys()) == ["image_grappa", "image_input", "image_label"]
            for key in i.keys():
                assert i[key].dtype == np.float32 and i[key].shape == (k["kspace"].shape[0], 384, 384)
            label = i["image_label"][()]
            assert i.attrs["max"] == pytest.approx(label.max(), rel=1e-6)
            assert i.attrs["norm"] == pytest.approx(np.linalg.norm(label), rel=1e-5)
            assert "grappa" not in i.attrs  # equispaced masks: a real GRAPPA image


def test_images_are_rss_of_the_fully_sampled_and_masked_kspace(converted, fastmri_dir):
    for image_path in sorted(converted.rglob("image/*.h5")):
        kspace_path = image_path.parent.parent / "kspace" / image_path.name
        with h5py.File(image_path, "r") as i, h5py.File(kspace_path, "r") as k:
            label, zero_filled, grappa = i["image_label"][()], i["image_input"][()], i["image_grappa"][()]
            mask = k["mask"][()]
            with h5py.File(fastmri_dir / i.attrs["source"], "r") as s:
                full = s["kspace"][()]  # the leaderboard stores k-space already under-sampled
        scale = label.max()
        np.testing.assert_allclose(label, _numpy_rss(full, (384, 384)), atol=1e-5 * scale)
        np.testing.assert_allclose(zero_filled, _numpy_rss(full * mask, (384, 384)), atol=1e-5 * scale)
        assert np.isfinite(grappa).all() and not np.array_equal(grappa, zero_filled)


def test_train_keeps_full_kspace_and_the_leaderboard_is_undersampled_with_its_mask(converted, fastmri_dir):
    for kspace_path in sorted(converted.rglob("kspace/*.h5")):
        image_path = kspace_path.parent.parent / "image" / kspace_path.name
        with h5py.File(kspace_path, "r") as k, h5py.File(image_path, "r") as i:
            stored, mask = k["kspace"][()], k["mask"][()]
            with h5py.File(fastmri_dir / i.attrs["source"], "r") as s:
                full = s["kspace"][()]
        if "leaderboard" in kspace_path.parts:
            np.testing.assert_array_equal(stored, full * mask)
            assert np.abs(stored[..., mask == 0]).max() == 0
        else:
            np.testing.assert_array_equal(stored, full)


def test_masks_are_challenge_masks(converted):
    for kspace_path in converted.rglob("kspace/*.h5"):
        acceleration = parse_volume_name(kspace_path).acceleration
        with h5py.File(kspace_path, "r") as k:
            mask = k["mask"][()]
        start, stop = acs_bounds(mask)
        assert 26 <= stop - start <= 39 + acceleration and abs(stop - start - 0.08 * mask.size) <= acceleration
        outside = np.flatnonzero(mask)
        outside = outside[(outside < start) | (outside >= stop)]
        assert len(set(outside % acceleration)) == 1 and np.all(np.diff(outside[outside < start]) == acceleration)
        assert acceleration / 2 < mask.size / mask.sum() < acceleration


def test_the_converted_data_loads_with_the_dataset(converted):
    train = SliceDataset([converted / "train", converted / "val"])
    assert len(train) == 8 * 2
    sample = train[0]
    assert np.isfinite(sample.target.numpy()).all() and sample.max_value > 0
    leaderboard = SliceDataset(converted / "leaderboard" / "acc8", kspace_only=True)
    assert len(leaderboard) == 2 * 2 and {v.name.acceleration for v in leaderboard.volumes} == {8}


def test_a_mask_family_grappa_cannot_fill_is_documented_in_the_file(fastmri_dir, tmp_path):
    convert([fastmri_dir], tmp_path, split=(1, 0, 0), mask_spec=MaskSpec("random", 0.08), limit=1, progress=False)
    (image_path,) = tmp_path.rglob("image/*.h5")
    with h5py.File(image_path, "r") as i, h5py.File(str(image_path).replace("/image/", "/kspace/"), "r") as k:
        assert i.attrs["grappa"] == NO_GRAPPA_NOTE
        np.testing.assert_array_equal(i["image_grappa"][()], i["image_input"][()])
        mask = k["mask"][()]
    start, stop = acs_bounds(mask)
    assert stop - start >= round(0.08 * mask.size) and 2 < mask.size / mask.sum() < 8  # random lines, acc4 or acc8 on average


# ---------------------------------------------------------------------------------------- split and acceleration


def _fake_sources(count: int) -> list[SourceVolume]:
    brains = [
        SourceVolume(Path(f"file_brain_AXT2_200_{6000000 + i}.h5"), "brain", 16, 16, 640, 320, "AXT2") for i in range(count)
    ]
    knees = [SourceVolume(Path(f"file{1000000 + i}.h5"), "knee", 30, 15, 640, 368, "CORPD_FBK") for i in range(count)]
    return brains + knees


def test_split_and_acceleration_are_deterministic_for_a_seed_and_disjoint(tmp_path):
    sources = _fake_sources(129)
    plan = plan_conversion(tmp_path, sources, seed=430, weights=CHALLENGE_SPLIT)
    again = plan_conversion(tmp_path, list(reversed(sources)), seed=430, weights=CHALLENGE_SPLIT)
    other = plan_conversion(tmp_path, sources, seed=7, weights=CHALLENGE_SPLIT)
    as_map = lambda jobs: {job.source.path.name: job.kspace_path for job in jobs}  # noqa: E731
    assert as_map(plan) == as_map(again) and as_map(plan) != as_map(other)
    # every volume exactly once, every output name once: no volume in two splits
    assert sorted(job.source.path.name for job in plan) == sorted(s.path.name for s in sources)
    assert len({job.kspace_path for job in plan}) == len(plan) == 258
    for anatomy in ("brain", "knee"):
        jobs = [job for job in plan if job.source.anatomy == anatomy]
        assert [sum(job.split == s for job in jobs) for s in ("train", "val", "leaderboard")] == [85, 15, 29]
        for split in ("train", "val"):
            for acc in (4, 8):
                indices = sorted(job.index for job in jobs if job.split == split and job.acceleration == acc)
                first = 1 if split == "train" else 1 + sum(j.split == "train" and j.acceleration == acc for j in jobs)
                assert indices == list(range(first, first + len(indices)))
        accs = [job.acceleration for job in jobs if job.split == "leaderboard"]
        assert abs(accs.count(4) - accs.count(8)) <= 1


def test_split_counts_give_every_split_a_volume_when_possible():
    assert split_counts(129, CHALLENGE_SPLIT) == [85, 15, 29]
    assert split_counts(3, CHALLENGE_SPLIT) == [1, 1, 1]
    assert split_counts(2, CHALLENGE_SPLIT) == [1, 0, 1]  # largest remainders
    assert split_counts(5, (1, 0, 1)) == [3, 0, 2] and split_counts(0, CHALLENGE_SPLIT) == [0, 0, 0]
    with pytest.raises(UserInputError, match="--split"):
        split_counts(5, (0, 0, 0))


def test_a_volume_keeps_its_mask_whatever_else_is_converted(tmp_path):
    sources = _fake_sources(20)
    masks = lambda jobs: {(j.source.path.name, j.acceleration): j.mask(430, MaskSpec()).tobytes() for j in jobs}  # noqa: E731
    everything = masks(plan_conversion(tmp_path, sources, 430, CHALLENGE_SPLIT))
    part = masks(plan_conversion(tmp_path, sources[:7], 430, CHALLENGE_SPLIT))
    shared = everything.keys() & part.keys()
    assert shared and all(everything[key] == part[key] for key in shared)


# ---------------------------------------------------------------------------------------- resume, --limit, folders


def test_an_interrupted_run_resumes_and_ends_equal(converted, fastmri_dir, tmp_path, monkeypatch):
    out = tmp_path / "Data"
    real_writer = convert_module.write_volume_files
    calls = []

    def interrupted_writer(kspace_path, image_path, slices, *args, **kwargs):
        calls.append(kspace_path)
        if len(calls) == 4:  # killed in the middle of the 4th volume, after its first slice

            def cut(source):
                yield next(source)
                raise KeyboardInterrupt

            slices = cut(iter(slices))
        return real_writer(kspace_path, image_path, slices, *args, **kwargs)

    monkeypatch.setattr(convert_module, "write_volume_files", interrupted_writer)
    with pytest.raises(KeyboardInterrupt):
        convert([fastmri_dir], out, seed=430, split=SPLIT, workers=1, progress=False, annotations=fastmri_plus_csvs(fastmri_dir))
    monkeypatch.undo()
    done = sorted(out.rglob("*.h5"))
    assert len(done) == 2 * 3 and not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert calls[3] not in done
    stale = calls[3].parent / f".{calls[3].name}.99999.tmp"  # what a killed process leaves behind
    stale.write_bytes(b"half a volume")
    report = convert([fastmri_dir], out, seed=430, split=SPLIT, workers=1, progress=False, annotations=fastmri_plus_csvs(fastmri_dir))
    assert len(report.written) == 12 - 3 and not stale.exists()
    assert _snapshot(out).keys() == _snapshot(converted).keys()
    for path in converted.rglob("*.h5"):
        with h5py.File(path, "r") as a, h5py.File(out / path.relative_to(converted), "r") as b:
            assert dict(a.attrs) == dict(b.attrs)  # the boxes too
            for key in a.keys():
                np.testing.assert_array_equal(a[key][()], b[key][()])
    assert convert([fastmri_dir], out, seed=430, split=SPLIT, progress=False, annotations=fastmri_plus_csvs(fastmri_dir)).written == []
    with pytest.raises(UserInputError, match=r"other annotations.*--overwrite"):  # the boxes are part of the settings
        convert([fastmri_dir], out, seed=430, split=SPLIT, progress=False)


def test_limit_converts_the_first_files_only(fastmri_dir, tmp_path):
    report = convert([fastmri_dir], tmp_path, split=SPLIT, limit=3, progress=False)
    first_three = sorted(p.name for p in fastmri_dir.glob("*.h5"))[:3]
    assert sorted(job.source.path.name for job in report.planned) == first_three == sorted(_manifest(tmp_path)["volumes"])
    assert len(list(tmp_path.rglob("*.h5"))) == 2 * 3
    with pytest.raises(UserInputError, match="--overwrite"):  # a larger conversion is another plan
        convert([fastmri_dir], tmp_path, split=SPLIT, limit=4, progress=False)
    with pytest.raises(UserInputError, match="--limit 0"):
        convert([fastmri_dir], tmp_path / "other", limit=0, progress=False)


def test_foreign_folders_are_never_touched(fastmri_dir, tmp_path):
    real = tmp_path / "Data" / "train" / "kspace" / "brain_acc4_1.h5"  # stands for the real challenge data
    real.parent.mkdir(parents=True)
    real.write_bytes(b"real data")
    for overwrite in (False, True):
        with pytest.raises(UserInputError, match="did not write"):
            convert([fastmri_dir], tmp_path / "Data", limit=1, overwrite=overwrite, progress=False)
    assert _snapshot(tmp_path / "Data") == {"train/kspace/brain_acc4_1.h5": b"real data"}
    before = _snapshot(fastmri_dir)  # the fastMRI folder itself (the generator's output) is foreign too
    with pytest.raises(UserInputError, match="did not write"):
        convert([fastmri_dir], fastmri_dir, limit=1, overwrite=True, progress=False)
    assert _snapshot(fastmri_dir) == before


def test_other_settings_are_refused_unless_overwrite(fastmri_dir, tmp_path):
    convert([fastmri_dir], tmp_path, seed=1, split=(1, 0, 0), limit=2, progress=False)
    before = _snapshot(tmp_path)
    with pytest.raises(UserInputError, match=r"seed 1 \(now 2\).*--overwrite"):
        convert([fastmri_dir], tmp_path, seed=2, split=(1, 0, 0), limit=2, progress=False)
    assert _snapshot(tmp_path) == before
    convert([fastmri_dir], tmp_path, seed=2, split=(0, 0, 1), limit=2, overwrite=True, progress=False)
    assert not list(tmp_path.glob("train/*/*.h5")) and len(list(tmp_path.rglob("*.h5"))) == 4


# ---------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_two_workers_write_what_one_worker_writes(fastmri_dir, tmp_path):
    one = tmp_path / "one"
    convert([fastmri_dir], one, split=SPLIT, limit=4, workers=1, progress=False)
    run = subprocess.run(
        [sys.executable, "-m", "utils.data.convert_fastmri", "--src", str(fastmri_dir), "--out", str(tmp_path / "two"),
         "--split", "1", "1", "1", "--limit", "4", "--workers", "2", "--no-progress"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "4 volumes (train 2, val 1, leaderboard 1; seed 430), 4 converted now" in run.stdout
    assert _snapshot(one).keys() == _snapshot(tmp_path / "two").keys()
    for path in one.rglob("*.h5"):
        with h5py.File(path, "r") as a, h5py.File(tmp_path / "two" / path.relative_to(one), "r") as b:
            for key in a.keys():
                np.testing.assert_array_equal(a[key][()], b[key][()])


@pytest.mark.slow
def test_converted_data_trains_reconstructs_and_scores(converted, tmp_path):
    """One epoch of a small model on part of the converted data (a brain volume: 2 steps; knee validation),
    then its leaderboard reconstruction and score."""

    from reconstruct_from_ckpt import main as reconstruct_main
    from tests.conftest import compose_config
    from tests.test_training import SMALL_MODEL
    from utils.evaluation.leaderboard import score_leaderboard
    from utils.training.trainer import train

    root = tmp_path / "Data"  # links to a few converted files keep the run short on 2 cores
    chosen = ["train/{}/brain_acc4_1.h5", "val/{}/knee_acc4_2.h5",
              "leaderboard/acc4/{}/knee_test1.h5", "leaderboard/acc8/{}/knee_test1.h5"]
    for pattern in chosen:
        for kind in ("kspace", "image"):
            link = root / pattern.format(kind)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(converted / pattern.format(kind))

    overrides = [
        f"data.root={root}", "data.synthetic_preset=null", f"result_root={tmp_path / 'result'}", "exp_name=fastmri",
        "training.epochs=1", "logger.mode=disabled", "data.num_workers=0", *SMALL_MODEL,
    ]
    state = train(compose_config("demo", overrides), progress=False)
    assert state.global_step == 2 and np.isfinite(state.train_loss_log).all() and 0 < state.best_metric < 1

    recon = tmp_path / "recon"
    checkpoint = tmp_path / "result" / "fastmri" / "checkpoints" / "best_model.pt"
    argv = ["-c", str(checkpoint), "-p", str(root / "leaderboard"), "-g", "-1", "-o", str(recon), "--num_workers", "0"]
    assert reconstruct_main([*argv, "--no-progress"]) == 0
    result = score_leaderboard(root / "leaderboard", recon, progress=False)
    assert result.count(acceleration=4) == result.count(acceleration=8) == 2
    assert 0.2 < result.mean(acceleration=4) < 1.0 and 0.2 < result.mean(acceleration=8) < 1.0
