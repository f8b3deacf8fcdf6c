"""The gates for foreign files, case by case: what each file is, said right, in one line; the torch floor.

The fuzzed corpus (tests/test_fuzz_gates.py) covers the mutations; here every input named in the issue that
once ended in a traceback, and each diagnosis, is checked by name.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_import_checkpoint import fastmri_varnet_state_dict
from utils.errors import UserInputError
from utils.experts.manifest import load_manifest
from utils.gates.torch_file import load_torch_file
from utils.gates.torch_floor import TORCH_FLOOR, require_safe_torch, torch_version
from utils.gates.yaml_file import read_yaml_mapping
from utils.model.checkpoint import load_checkpoint
from utils.tools.import_checkpoint import ALLOWED_CONFIG_CLASSES, import_checkpoint


class _Reduce:
    """Pickles as ``callable(*args)`` with optional BUILD state: the crafted files of the issue."""

    def __init__(self, callable_, args=(), state=None):
        self.callable, self.args, self.state = callable_, args, state

    def __reduce__(self):
        return (self.callable, self.args) if self.state is None else (self.callable, self.args, self.state)


def _one_line(call, path: Path, *phrases: str) -> str:
    with pytest.raises(UserInputError) as caught:
        call(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message, message
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in: {message}"
    return message


def _pop_empty_stack(path: Path) -> None:
    path.write_bytes(b"\x80\x020.")  # PROTO 2, POP on an empty stack, STOP


def _self_containing_list(path: Path) -> None:
    items: list = []
    items.append(items)
    torch.save({"model": {}, "args": items}, path)


CRAFTED = {
    "SimpleNamespace whose state sets __class__": lambda p: torch.save({"args": _Reduce(types.SimpleNamespace, (), {"__class__": argparse.Namespace})}, p),
    "argparse.Namespace called with a positional argument": lambda p: torch.save({"args": _Reduce(argparse.Namespace, (1,))}, p),
    "a pickle that pops an empty stack": _pop_empty_stack,
    "a list that contains itself": _self_containing_list,
    "a code-running payload": lambda p: torch.save({"args": _Reduce(pathlib.Path.touch, (p.with_name("PAYLOAD_RAN"),))}, p),
}


@pytest.mark.parametrize("craft", CRAFTED.values(), ids=CRAFTED.keys())
def test_crafted_torch_files_are_refused_in_one_line_without_running(craft, tmp_path):
    path = tmp_path / "crafted.pt"
    craft(path)
    _one_line(lambda p: import_checkpoint(p, tmp_path / "out.pt"), path)
    _one_line(load_checkpoint, path)
    assert not (tmp_path / "out.pt").exists() and not (tmp_path / "PAYLOAD_RAN").exists()


DIAGNOSES = {
    "empty": (lambda p: p.write_bytes(b""), "is empty"),
    "text": (lambda p: p.write_text("hello world\n"), "is a text file"),
    "html": (lambda p: p.write_text("<!DOCTYPE html>\n<html><body>403 Forbidden</body></html>"), "is an HTML page"),
    "json": (lambda p: p.write_text(json.dumps({"model": [1, 2]})), "is a JSON file"),
    "npy": (lambda p: np.save(p.open("wb"), np.zeros(3)), "is a NumPy .npy file"),
    "hdf5": (lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100)), "is an HDF5 file"),
    "binary": (lambda p: p.write_bytes(bytes(range(256))), "neither a zip archive nor a pickle"),
    "truncated zip": (lambda p: (torch.save({"w": torch.zeros(100)}, p), p.write_bytes(p.read_bytes()[:300])), "truncated or corrupt"),
    "foreign global": (lambda p: torch.save({"m": torch.nn.Identity()}, p), "holds the object torch.nn.modules.linear.Identity"),
    "sparse tensor": (lambda p: torch.save({"w": torch.eye(3).to_sparse()}, p), "only dense numeric tensors"),
    "too deep": (lambda p: torch.save(_nested(100), p), "levels"),
}


def _nested(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("make,phrase", DIAGNOSES.values(), ids=DIAGNOSES.keys())
def test_each_foreign_file_is_diagnosed_right(make, phrase, tmp_path):
    path = tmp_path / "file.pt"
    make(path)
    _one_line(load_torch_file, path, phrase)


def test_etc_passwd_as_a_checkpoint_and_in_a_manifest(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    _one_line(load_checkpoint, passwd, "is a text file")
    manifest = tmp_path / "experts.yaml"
    manifest.write_text(f"router: rule\nexperts: {{all: {passwd}}}\n")
    from utils.experts.serve import load_expert_set

    _one_line(lambda _: load_expert_set(load_manifest(manifest), torch.device("cpu")), passwd, "is a text file")


def _windows_checkpoint(path: Path) -> None:
    """A GeekSeek checkpoint saved on Windows: its config holds ``pathlib.WindowsPath`` objects."""
    class WindowsPath(pathlib.PureWindowsPath):  # pickled under the real class's name, as Windows writes it
        pass

    WindowsPath.__module__, WindowsPath.__qualname__ = "pathlib", "WindowsPath"
    real, pathlib.WindowsPath = pathlib.WindowsPath, WindowsPath
    try:
        args = types.SimpleNamespace(data_path_train=WindowsPath("C:\\Data\\train"), lr=1e-3)
        torch.save({"model": fastmri_varnet_state_dict(1, 4, 2, 2, 2), "epoch": 2, "args": args}, path)
    finally:
        pathlib.WindowsPath = real


def test_a_checkpoint_saved_on_windows_imports(tmp_path):
    source = tmp_path / "windows.pt"
    _windows_checkpoint(source)
    assert b"WindowsPath" in source.read_bytes()
    imported = import_checkpoint(source, tmp_path / "out.pt")
    assert imported["origin"]["source_args"]["data_path_train"] == "C:\\Data\\train"


def test_allowed_classes_and_plain_data_load(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"args": argparse.Namespace(lr=1e-3, path=pathlib.PurePosixPath("/a")), "w": torch.ones(2)}, path)
    loaded = load_torch_file(path, ALLOWED_CONFIG_CLASSES)
    assert loaded["args"].lr == 1e-3 and torch.equal(loaded["w"], torch.ones(2))


def test_the_torch_floor_is_enforced():
    assert torch_version() >= TORCH_FLOOR  # this machine's torch passes
    require_safe_torch(TORCH_FLOOR)
    with pytest.raises(UserInputError, match=r"torch 2\.9\.1 is older than 2\.10\.0.*GHSA-63cw-57p8-fm3p") as caught:
        require_safe_torch((2, 9, 1))
    assert "\n" not in str(caught.value)


def test_an_old_torch_is_refused_at_start_up(tmp_path, monkeypatch):
    """Each entry point runs the floor check before its main: one line, exit status 2."""
    import utils.gates.torch_floor as floor
    from utils.errors import run_cli

    monkeypatch.setattr(floor, "torch_version", lambda: (2, 5, 1))
    ran = []
    with pytest.raises(SystemExit) as exit_:
        run_cli(lambda argv: ran.append(argv), [], checks=[floor.require_safe_torch])
    assert exit_.value.code == 2 and not ran


YAML_CASES = {
    "alias cycle": ("experts: &a {all: *a}\n", "contains itself"),
    "python tag": ("experts: !!python/object/apply:os.system [echo]\n", "not readable YAML"),
    "deep": ("experts: " + "[" * 100 + "]" * 100 + "\n", "levels"),
    "binary": (b"\xff\xfe\x00", "UTF-8"),
    "not a mapping": ("- a\n- b\n", "not a mapping"),
}


@pytest.mark.parametrize("text,phrase", YAML_CASES.values(), ids=YAML_CASES.keys())
def test_yaml_gate(text, phrase, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    _one_line(lambda p: read_yaml_mapping(p, "expert manifest"), path, phrase)


@pytest.mark.parametrize("layout,by_pread", [
    ({}, True),                                                # contiguous
    ({"dtype": ">f4"}, True),                                  # contiguous, big-endian on disk
    ({"userblock_size": 512}, False),                          # a user block shifts the addresses: h5py reads
    ({"chunks": (1, 8, 8)}, False),                            # chunked
    ({"chunks": (1, 8, 8), "compression": "gzip"}, False),     # filtered
])
def test_read_volume_equals_h5py_for_every_layout(layout, by_pread, tmp_path, monkeypatch):
    import h5py

    import utils.data.h5 as gate

    data = np.random.default_rng(2).random((3, 8, 8)).astype(np.float32) - 0.5
    layout = dict(layout)
    with h5py.File(tmp_path / "v.h5", "w", userblock_size=layout.pop("userblock_size", 0)) as file:
        file.create_dataset("image_label", data=data, **layout)
    if by_pread:  # the fast path must not fall back to h5py's read
        monkeypatch.setattr(gate, "read_slice", lambda *args: pytest.fail("read through h5py"))
    with h5py.File(tmp_path / "v.h5", "r") as file:
        dataset = file["image_label"]
        volume = gate.read_volume(dataset)
        assert np.array_equal(volume, data) and volume.dtype == dataset.dtype


def test_read_volume_of_a_file_cut_inside_its_data_is_one_line(tmp_path):
    import h5py

    from utils.data.h5 import read_volume

    with h5py.File(tmp_path / "v.h5", "w") as file:
        file.create_dataset("image_label", data=np.ones((4, 64, 64), np.float32))
    with h5py.File(tmp_path / "v.h5", "r") as file:
        dataset, size = file["image_label"], (tmp_path / "v.h5").stat().st_size
        with open(tmp_path / "v.h5", "r+b") as raw:  # the data's tail goes while h5py holds the file open
            raw.truncate(size - 1000)
        with pytest.raises(UserInputError, match=r"v\.h5.*'image_label' cannot be read \(truncated or corrupt\?\)"):
            read_volume(dataset)
