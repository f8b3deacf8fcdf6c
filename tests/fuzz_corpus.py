"""A seeded corpus of broken files, mutated from valid ones, for the gates' fuzz tests (``tests/test_fuzz_*.py``).

Every case is ``(name, path)``: a copy of a valid file broken one way, reproducibly from ``(seed, index)``.

- bytes: truncation, byte flips, a zeroed block, garbage appended, an empty file, an HTML or text page;
- pickles (PyTorch zip archives): opcodes spliced into ``data.pkl`` (``GLOBAL``s of functions that would create
  :data:`MARKER` if ever called, ``REDUCE``, ``BUILD``, ``SETITEM`` on a list, stack pops, stray marks, undefined
  memo reads), and structures that unpickle fine but are not a checkpoint (wrong types, a list that contains
  itself, deep nesting, sparse and quantized tensors);
- h5: wrong dtypes, shapes and keys, NaN or Inf slices, bad ``max`` attributes, masks of other values, groups in
  place of datasets;
- YAML: wrong types, alias cycles, deep nesting, Python tags, NUL bytes in paths.

A payload never runs if the gates hold: the tests assert that :data:`MARKER` does not exist afterwards.
"""
from __future__ import annotations

import io
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import h5py
import numpy as np
import torch

MARKER_NAME = "PAYLOAD_RAN"
Mutator = Callable[[Path, np.random.Generator], None]


def marker_path(folder: Path) -> Path:
    return folder / MARKER_NAME


# ---------------------------------------------------------------------------------------------- bytes


def truncate(path: Path, rng: np.random.Generator) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(rng.integers(0, max(len(data), 1)))])


def flip_bytes(path: Path, rng: np.random.Generator) -> None:
    data = bytearray(path.read_bytes())
    for position in rng.integers(0, len(data), size=int(rng.integers(1, 16))):
        data[position] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))


def zero_block(path: Path, rng: np.random.Generator) -> None:
    data = bytearray(path.read_bytes())
    start = int(rng.integers(0, len(data)))
    end = min(len(data), start + int(rng.integers(1, 4096)))
    data[start:end] = bytes(end - start)
    path.write_bytes(bytes(data))


def append_garbage(path: Path, rng: np.random.Generator) -> None:
    path.write_bytes(path.read_bytes() + rng.bytes(int(rng.integers(1, 2048))))


def empty(path: Path, rng: np.random.Generator) -> None:
    path.write_bytes(b"")


def html_page(path: Path, rng: np.random.Generator) -> None:
    path.write_text("<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n")


def text_page(path: Path, rng: np.random.Generator) -> None:
    texts = ("hello world\n", "root:x:0:0:root:/root:/bin/bash\n", '{"model": [1, 2, 3]}\n', "key: value\n")
    path.write_text(texts[int(rng.integers(len(texts)))])


def npy_file(path: Path, rng: np.random.Generator) -> None:
    buffer = io.BytesIO()
    np.save(buffer, rng.standard_normal(8))
    path.write_bytes(buffer.getvalue())


BYTE_MUTATORS: dict[str, Mutator] = {
    "truncate": truncate, "flip_bytes": flip_bytes, "zero_block": zero_block, "append_garbage": append_garbage,
    "empty": empty, "html_page": html_page, "text_page": text_page, "npy_file": npy_file,
}


# ---------------------------------------------------------------------------------------------- pickles


def _payload(folder: Path) -> bytes:
    """Opcodes that would create the marker file if the unpickler called what they name."""
    command = f"touch {marker_path(folder)}".encode()
    target = str(marker_path(folder)).encode()
    choices = [
        b"cos\nsystem\n(X" + len(command).to_bytes(4, "little") + command + b"tR",
        b"cposix\nsystem\n(X" + len(command).to_bytes(4, "little") + command + b"tR",
        b"cbuiltins\nexec\n(X" + (n := f"open({str(marker_path(folder))!r}, 'w')".encode()).__len__().to_bytes(4, "little") + n + b"tR",
        b"cbuiltins\nopen\n(X" + len(target).to_bytes(4, "little") + target + b"X\x01\x00\x00\x00wtR",
        b"csubprocess\ncall\n(X" + len(command).to_bytes(4, "little") + command + b"tR",
        b"cpathlib\nPath.touch\n(X" + len(target).to_bytes(4, "little") + target + b"tR",
    ]
    return choices[int(np.random.default_rng(len(str(folder))).integers(len(choices)))]


ODD_OPCODES = [b"0", b"1", b"2", b"(", b"t", b")", b"R", b"b", b"s", b"u", b"e", b"a", b"h\xff", b"j\xff\xff\x00\x00",
               b"N", b"]", b"}", b"\x85", b"\x86", b"\x87", b"\x88", b"\x89", b"\x94", b"\x93", b"\x82\x01", b"\x8e\x01\x00\x00\x00x"]


def _rewrite_pickle(path: Path, change: Callable[[bytes], bytes]) -> None:
    """Apply ``change`` to the ``data.pkl`` of a PyTorch zip archive (stored entries, as torch writes them)."""
    with zipfile.ZipFile(path) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for info, data in entries:
            archive.writestr(info, change(data) if info.filename.endswith("data.pkl") else data)


def splice_opcodes(path: Path, rng: np.random.Generator) -> None:
    def change(data: bytes) -> bytes:
        for _ in range(int(rng.integers(1, 4))):
            position = int(rng.integers(2, max(len(data) - 1, 3)))
            data = data[:position] + ODD_OPCODES[int(rng.integers(len(ODD_OPCODES)))] + data[position:]
        return data

    _rewrite_pickle(path, change)


def splice_payload(path: Path, rng: np.random.Generator) -> None:
    payload = _payload(path.parent)

    def change(data: bytes) -> bytes:
        if rng.random() < 0.5:  # as the whole object
            return data[:2] + payload + b"."
        position = int(rng.integers(2, max(len(data) - 1, 3)))
        return data[:position] + payload + data[position:]

    _rewrite_pickle(path, change)


def _save(path: Path, value: object) -> None:
    torch.save(value, path)


def _self_containing() -> list:
    items: list = []
    items.append(items)
    return items


def _deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def wrong_structure(path: Path, rng: np.random.Generator) -> None:
    """A file that unpickles fine but is no checkpoint: each kind of wrong value."""
    loaded = torch.load(path, weights_only=False)  # the corpus's own valid source files
    kind = int(rng.integers(9))
    if kind == 0:
        value = _self_containing()
    elif kind == 1:
        value = {**loaded, "model": _deep(200)}
    elif kind == 2:
        value = {**loaded, "model": list(loaded.get("model", {}).values())} if isinstance(loaded, dict) else [loaded]
    elif kind == 3:
        value = {**loaded, "model_config": "dlka_varnet"} if isinstance(loaded, dict) else "x"
    elif kind == 4:
        value = {**loaded, "config": [1, 2, 3]} if isinstance(loaded, dict) else 3
    elif kind == 5:
        value = torch.sparse_coo_tensor(torch.tensor([[0, 1]]), torch.tensor([1.0, 2.0]), (4,))
    elif kind == 6:
        value = {"model": {"w": torch.quantize_per_tensor(torch.rand(4), 0.1, 0, torch.quint8)}}
    elif kind == 7:
        model = loaded.get("model", {}) if isinstance(loaded, dict) else {}
        value = {**loaded, "model": {key: torch.full_like(tensor, float("nan")) for key, tensor in model.items()}}
    else:
        value = {**loaded, "model": {key: "weights" for key in (loaded.get("model") or {"w": 0})}} if isinstance(loaded, dict) else None
    _save(path, value)


PICKLE_MUTATORS: dict[str, Mutator] = {"splice_opcodes": splice_opcodes, "splice_payload": splice_payload, "wrong_structure": wrong_structure}


# ---------------------------------------------------------------------------------------------- h5


def _replace(handle: h5py.File, key: str, data: np.ndarray) -> None:
    del handle[key]
    handle.create_dataset(key, data=data)


def h5_mutation(path: Path, rng: np.random.Generator) -> None:
    """One wrong dtype, shape, key, value or attribute in a challenge h5 file (k-space, image or reconstruction)."""
    with h5py.File(path, "r+") as handle:
        keys = [key for key in ("kspace", "mask", "image_label", "reconstruction") if key in handle]
        key = keys[int(rng.integers(len(keys)))]
        data = handle[key][()]
        kind = int(rng.integers(10))
        if kind == 0:
            _replace(handle, key, data.real.astype(np.float32) if np.iscomplexobj(data) else data.astype(np.complex64))
        elif kind == 1:
            _replace(handle, key, data.reshape(-1)[: max(data.size // 2, 1)])
        elif kind == 2:
            handle[key + "_renamed"] = data
            del handle[key]
        elif kind == 3 and data.ndim:
            data = data.astype(data.dtype)
            index = tuple(int(rng.integers(size)) for size in data.shape)
            data[index] = rng.choice([np.nan, np.inf, -np.inf])
            _replace(handle, key, data)
        elif kind == 4:
            name = ("max", "norm", "annotations")[int(rng.integers(3))]
            values = ("high", -1.0, np.nan, np.array([1.0, 2.0]), '{"0": [{"x": "a"}]}', '{"0": [{"x": 1, "y": 2, "width": -5, "height": 9}]}')
            handle.attrs[name] = values[int(rng.integers(len(values)))]
        elif kind == 5:
            del handle[key]
            handle.create_group(key)
        elif kind == 6:
            _replace(handle, key, data.astype("S8") if data.dtype.kind != "c" else np.zeros(data.shape, dtype=np.int64))
        elif kind == 7:
            _replace(handle, key, data[:0])
        elif kind == 8:
            if "max" in handle.attrs:
                del handle.attrs["max"]
            else:
                handle.attrs["annotations"] = "{not json"
        else:
            _replace(handle, key, np.concatenate([data, data], axis=-1) if data.ndim else data)


def nan_slice(path: Path, key: str, slice_index: int) -> None:
    """NaN in one value of one slice of ``key``."""
    with h5py.File(path, "r+") as handle:
        data = handle[key][()]
        data[slice_index].reshape(-1)[0] = np.nan
        _replace(handle, key, data)


H5_MUTATORS: dict[str, Mutator] = {"h5_mutation": h5_mutation, "truncate": truncate, "flip_bytes": flip_bytes,
                                   "empty": empty, "html_page": html_page}


# ---------------------------------------------------------------------------------------------- YAML


YAML_TEXTS = [
    b"router: [rule]\nexperts: {all: a.pt}\n",
    b"router: rule\nexperts: &a {all: *a}\n",
    b"router: rule\nexperts: " + b"[" * 500 + b"]" * 500 + b"\n",
    b"router: rule\nexperts: {all: !!python/object/apply:os.system [touch PAYLOAD_RAN]}\n",
    b'router: rule\nexperts: {all: "a\\0b.pt"}\n',
    b"router: rule\nexperts: {all: " + b"x" * 5000 + b".pt}\n",
    b"router: rule\nexperts: {all: 3}\n",
    b"router: rule\nexperts: {all: [a.pt, 7]}\n",
    b"router: rule\nexperts: {all: a.pt}\nclassifier: {a: 1}\n",
    b"router: classifier\nclassifier: a.pt\nexperts: {brain: a.pt, knee: a.pt}\n",
    b"router: rule\nexperts: {all: ~nosuchuser/a.pt}\n",
    b"\xff\xfe\x00garbage",
    b"name: x\nconfig_name: [1]\nexperts: {all: [lr=1]}\n",
    b"name: ../x\nexperts: {all: []}\n",
    b"a: b: c\n",
    b"router: rule\nexperts: {all: a.pt}\n" * 40000,
]


def yaml_mutation(path: Path, rng: np.random.Generator) -> None:
    path.write_bytes(YAML_TEXTS[int(rng.integers(len(YAML_TEXTS)))])


YAML_MUTATORS: dict[str, Mutator] = {"yaml_mutation": yaml_mutation, "flip_bytes": flip_bytes, "truncate": truncate,
                                     "empty": empty, "html_page": html_page}


# ---------------------------------------------------------------------------------------------- the corpus


def cases(source: Path, folder: Path, mutators: dict[str, Mutator], count: int, seed: int) -> Iterator[tuple[str, Path]]:
    """``count`` broken copies of ``source`` in ``folder``, each made by one mutator drawn from ``(seed, index)``."""
    names = sorted(mutators)
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        name = names[int(rng.integers(len(names)))]
        path = folder / f"case{index:04d}_{name}{source.suffix}"
        shutil.copyfile(source, path)
        try:
            mutators[name](path, rng)
        except (pickle.PicklingError, ValueError, TypeError, OSError, zipfile.BadZipFile, KeyError):
            shutil.copyfile(source, path)  # that mutation does not apply to this file: keep it valid
        yield name, path
