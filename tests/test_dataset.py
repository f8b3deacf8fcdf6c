"""SliceDataset: items, lazy per-worker file handles, and one clear error per malformed input."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import utils.data.dataset as dataset_module
from utils.data.dataset import SliceDataset
from utils.errors import UserInputError


def test_items_carry_everything_the_model_and_metric_need(tiny_data):
    dataset = SliceDataset(tiny_data / "train")
    assert len(dataset) == sum(v.kspace.num_slices for v in dataset.volumes) == 8
    for index in range(len(dataset)):
        sample = dataset[index]
        coils, height, width, two = sample.masked_kspace.shape
        assert two == 2 and sample.masked_kspace.dtype == torch.float32
        assert sample.mask.shape == (1, 1, width, 1)
        unsampled = sample.mask.view(-1) == 0
        assert torch.all(sample.masked_kspace[:, :, unsampled] == 0)
        assert sample.target.shape == (384, 384) and sample.fg_mask.shape == (384, 384)
        assert set(torch.unique(sample.fg_mask).tolist()) <= {0.0, 1.0}
        assert sample.anatomy in ("brain", "knee") and sample.acceleration in (4, 8)
        assert sample.fname.startswith(f"{sample.anatomy}_acc{sample.acceleration}_")
        with h5py.File(tiny_data / "train/image" / sample.fname, "r") as image:
            assert sample.max_value == pytest.approx(float(image.attrs["max"]))
            np.testing.assert_array_equal(sample.target.numpy(), image["image_label"][sample.slice_idx])


def test_leaderboard_mode_reads_kspace_only(tiny_data):
    dataset = SliceDataset(tiny_data / "leaderboard/acc8", kspace_only=True)
    sample = dataset[0]
    assert sample.acceleration == 8 and sample.target.numel() == 0 and np.isnan(sample.max_value)
    assert sample.fname in ("brain_test1.h5", "knee_test1.h5")


def test_files_are_opened_once_per_process_not_per_item(tiny_data, monkeypatch):
    opened = []
    real_open = dataset_module.open_h5
    monkeypatch.setattr(dataset_module, "open_h5", lambda path: opened.append(path) or real_open(path))
    dataset = SliceDataset(tiny_data / "val")
    for _ in range(2):
        for index in range(len(dataset)):
            dataset[index]
    assert len(opened) == 2 * len(dataset.volumes)  # one k-space and one image handle per volume


def test_dataloader_with_worker_processes_matches_the_main_process(tiny_data):
    dataset = SliceDataset(tiny_data / "train")
    dataset[0]  # the parent opens handles first; forked workers must not reuse them
    loader = DataLoader(dataset, batch_size=1, num_workers=2)
    seen = {(batch.fname[0], int(batch.slice_idx)): batch.masked_kspace[0] for batch in loader}
    assert len(seen) == len(dataset)
    for index in (0, len(dataset) - 1):
        sample = dataset[index]
        torch.testing.assert_close(seen[(sample.fname, sample.slice_idx)], sample.masked_kspace)


# ---- malformed input: each case ends in a UserInputError naming the file ----


def _edit(path, action):
    with h5py.File(path, "r+") as handle:
        action(handle)


def _replace(key, value):
    def action(handle):
        del handle[key]
        handle.create_dataset(key, data=value)

    return action


KSPACE = "train/kspace/brain_acc4_1.h5"
IMAGE = "train/image/brain_acc4_1.h5"


@pytest.mark.parametrize(
    "relative,action,message",
    [
        (KSPACE, lambda h: h.__delitem__("kspace"), "missing key 'kspace'"),
        (KSPACE, lambda h: h.__delitem__("mask"), "missing key 'mask'"),
        (IMAGE, lambda h: h.__delitem__("image_label"), "missing key 'image_label'"),
        (IMAGE, lambda h: h.attrs.__delitem__("max"), "missing attribute 'max'"),
        (IMAGE, lambda h: h.attrs.__setitem__("max", "5e-4"), "attribute 'max' must be one finite positive number"),
        (IMAGE, lambda h: h.attrs.__setitem__("max", np.nan), "attribute 'max' must be one finite positive number"),
        (KSPACE, _replace("mask", np.ones(17, np.float32)), "'mask' has shape"),
        (IMAGE, _replace("image_label", np.zeros((5, 384, 384), np.float32)), "has 5 slices"),
        (KSPACE, _replace("kspace", np.zeros((2, 4, 8), np.complex64)), "expected 4 axes"),
        (KSPACE, _replace("kspace", np.zeros((2, 4, 8, 396), np.float32)), "must be complex"),
    ],
)
def test_malformed_files_fail_at_construction_naming_the_file(tiny_train_copy, relative, action, message):
    _edit(tiny_train_copy / relative, action)
    with pytest.raises(UserInputError, match=message) as error:
        SliceDataset(tiny_train_copy / "train")
    assert str(tiny_train_copy / relative) in str(error.value)


def test_unpaired_names_are_reported(tiny_train_copy):
    (tiny_train_copy / "train/image/brain_acc4_1.h5").rename(tiny_train_copy / "train/image/brain_acc4_9.h5")
    with pytest.raises(UserInputError, match="has no matching file in") as error:
        SliceDataset(tiny_train_copy / "train")
    assert "brain_acc4_1.h5" in str(error.value)


def test_truncated_file_is_reported(tiny_train_copy):
    path = tiny_train_copy / KSPACE
    path.write_bytes(path.read_bytes()[:4096])
    with pytest.raises(UserInputError, match="cannot be read as HDF5") as error:
        SliceDataset(tiny_train_copy / "train")
    assert str(path) in str(error.value)


def test_foreign_file_name_is_reported(tiny_train_copy):
    (tiny_train_copy / "train/kspace/brain_acc4_1.h5").rename(tiny_train_copy / "train/kspace/scan01.h5")
    (tiny_train_copy / "train/image/brain_acc4_1.h5").rename(tiny_train_copy / "train/image/scan01.h5")
    with pytest.raises(UserInputError, match="not a challenge file name"):
        SliceDataset(tiny_train_copy / "train")


def test_missing_and_empty_folders_are_reported(tmp_path):
    with pytest.raises(UserInputError, match="data folder not found"):
        SliceDataset(tmp_path / "nowhere")
    (tmp_path / "train/kspace").mkdir(parents=True)
    (tmp_path / "train/image").mkdir(parents=True)
    with pytest.raises(UserInputError, match="holds no .h5 files"):
        SliceDataset(tmp_path / "train")


def test_nan_kspace_is_reported_with_file_and_slice(tiny_train_copy):
    def poison(handle):
        data = handle["kspace"][()]
        data[1, 0, 5, 5] = np.nan
        handle["kspace"][...] = data

    _edit(tiny_train_copy / KSPACE, poison)
    dataset = SliceDataset(tiny_train_copy / "train")
    index = next(i for i, (v, s, _) in enumerate(dataset.examples) if dataset.volumes[v].kspace_path.name == "brain_acc4_1.h5" and s == 1)
    with pytest.raises(UserInputError, match="slice 1 of 'kspace' holds NaN") as error:
        dataset[index]
    assert "brain_acc4_1.h5" in str(error.value)
