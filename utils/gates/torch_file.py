"""The one gate for PyTorch files: checkpoints of this repository, foreign checkpoints, the anatomy classifier.

Every ``.pt`` file a user hands in comes through :func:`load_torch_file`, which either returns tensors and plain
data or raises one :class:`~utils.errors.UserInputError` naming the file and what is wrong with it, whatever the
file holds and whatever torch raises:

1. what the file is, from its first bytes, before any unpickling: empty, an HTML page (a failed download), JSON,
   text, a NumPy ``.npy`` or HDF5 file, or neither a zip archive nor a pickle; a zip archive whose central
   directory is missing (truncated) or whose pickle is larger than :data:`MAX_PICKLE_BYTES`;
2. ``torch.load(weights_only=True)``: nothing but tensors, plain data and the classes the caller allows is ever
   built; any exception it raises (a global outside the allow-list, a crafted opcode sequence, a truncated
   storage) becomes one line;
3. what it returned: nested at most :data:`MAX_DEPTH` deep with at most :data:`MAX_NODES` containers and values,
   without cycles, every value a tensor (dense, strided, not quantized), plain data or an allowed object.

The torch floor (:mod:`utils.gates.torch_floor`) is checked first: older releases have published
``weights_only`` bypasses.
"""
from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from utils.errors import UserInputError, file_error
from utils.gates.plain import check_plain
from utils.gates.torch_floor import require_safe_torch

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_FILE_BYTES", "MAX_PICKLE_BYTES", "describe_foreign_bytes", "load_torch_file"]

MAX_DEPTH = 64  # a checkpoint nests a handful of levels (optimizer state: 4)
MAX_NODES = 2_000_000  # containers and values; a 67 M-parameter run with its optimizer holds about 10^4
MAX_FILE_BYTES = 32 * 1024**3  # the largest run with its optimizer state is about 1 GB
MAX_PICKLE_BYTES = 256 * 1024**2  # the pickled structure alone (tensors are stored apart); ours is well under 1 MB
_SAFE_DTYPES = {torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.complex64, torch.complex128,
                torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool}
_ZIP, _NUMPY, _HDF5 = b"PK\x03\x04", b"\x93NUMPY", b"\x89HDF\r\n\x1a\n"


def _looks_like_text(head: bytes) -> str | None:
    """'an HTML page', 'a JSON file' or 'a text file' when ``head`` decodes as text; None otherwise."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 32 and c not in "\t\n\r\f" for c in text):
        return None
    stripped = text.lstrip().lower()
    if stripped.startswith(("<!doctype html", "<html", "<head", "<body")):
        return "an HTML page (a failed download?)"
    if stripped.startswith(("{", "[")):
        try:
            json.loads(text)
            return "a JSON file"
        except ValueError:
            pass
    return "a text file"


def describe_foreign_bytes(path: Path, head: bytes) -> str | None:
    """What a file is when its first bytes say it cannot be a PyTorch file; None for a zip archive or a pickle."""
    if not head:
        return "is empty (0 bytes)"
    if head.startswith(_ZIP) or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        return None
    if head.startswith(_NUMPY):
        return "is a NumPy .npy file, not a PyTorch checkpoint"
    if head.startswith(_HDF5):
        return "is an HDF5 file, not a PyTorch checkpoint"
    text = _looks_like_text(head)
    if text:
        return f"is {text}, not a PyTorch checkpoint"
    return f"is neither a zip archive nor a pickle, so not a PyTorch checkpoint (it starts with bytes {head[:8].hex(' ')})"


def _check_archive(path: Path) -> None:
    """A zip-format checkpoint: readable central directory and a pickle of bounded size."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [info for info in archive.infolist() if info.filename.endswith("data.pkl")]
    except Exception:  # noqa: BLE001 -- foreign bytes: BadZipFile, EOFError, NotImplementedError (zip version), struct.error ...
        raise file_error(path, "is truncated or corrupt: its zip archive cannot be read") from None
    if not pickles:
        raise file_error(path, "is a zip archive without a pickled object (data.pkl), not a PyTorch checkpoint")
    if max(info.file_size for info in pickles) > MAX_PICKLE_BYTES:
        raise file_error(path, f"holds a pickle of {max(i.file_size for i in pickles):,} bytes, over the limit of "
                               f"{MAX_PICKLE_BYTES:,}; refusing to load it")


def _load_failure(path: Path, err: BaseException) -> UserInputError:
    """One line for whatever ``torch.load`` raised."""
    message = str(err)
    if isinstance(err, pickle.UnpicklingError) and ("GLOBAL" in message or "global" in message):
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", message)
        what = f"the object {found[1]}" if found else "an object"
        return file_error(path, f"holds {what}, which is not a tensor, plain data or an allowed class; refusing to unpickle it")
    if isinstance(err, (EOFError, zipfile.BadZipFile)) or "PytorchStreamReader" in message or "unexpected EOF" in message:
        return file_error(path, "is truncated or corrupt (PyTorch cannot read it to the end)")
    if isinstance(err, (RecursionError, MemoryError)):
        return file_error(path, f"is too deeply nested or too large to load ({type(err).__name__})")
    return file_error(path, f"holds a malformed pickle that cannot be loaded safely ({type(err).__name__})")


def _dense_tensor(path: Path) -> Callable[[Any], bool]:
    """A leaf test for :func:`check_plain`: tensors are leaves if dense, strided and numeric, else refused."""
    def is_leaf(item: Any) -> bool:
        if not isinstance(item, torch.Tensor):
            return False
        if item.layout != torch.strided or item.is_quantized or item.dtype not in _SAFE_DTYPES:
            raise file_error(path, f"holds a tensor of layout {item.layout}, dtype {item.dtype}; only dense numeric tensors are accepted")
        return True

    return is_leaf


def load_torch_file(path: str | Path, allowed: Iterable[type | tuple[Any, str]] = ()) -> Any:
    """Load a PyTorch file as tensors and plain data (and the ``allowed`` classes), on the CPU.

    ``allowed`` takes classes, or ``(callable, "module.Name")`` pairs that build ``module.Name`` with
    ``callable`` (e.g. a ``pathlib.WindowsPath`` as a ``PureWindowsPath`` on Linux). Every problem is one
    UserInputError naming ``path``.
    """
    require_safe_torch()
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "not found" if not path.exists() else "is not a file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError as err:
        raise file_error(path, f"cannot be read ({err.strerror or err})") from None
    foreign = describe_foreign_bytes(path, head)
    if foreign:
        raise file_error(path, foreign)
    if size > MAX_FILE_BYTES:
        raise file_error(path, f"is {size:,} bytes, over the limit of {MAX_FILE_BYTES:,} for a checkpoint")
    if head.startswith(_ZIP):
        _check_archive(path)
    allowed = list(allowed)
    try:
        with torch.serialization.safe_globals(allowed):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - the unpickler of a crafted file can raise anything; each is the file's fault
        raise _load_failure(path, err) from None
    classes = [entry if isinstance(entry, type) else entry[0] for entry in allowed]
    check_plain(path, loaded, _dense_tensor(path), [cls for cls in classes if isinstance(cls, type)], MAX_DEPTH, MAX_NODES)
    return loaded
