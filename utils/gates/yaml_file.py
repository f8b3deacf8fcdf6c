"""The one gate for YAML a user hands in: expert manifests and expert-set files.

:func:`read_yaml_mapping` returns the file's top-level mapping as checked plain data, or raises one
:class:`~utils.errors.UserInputError` naming the file: missing, not a file, larger than :data:`MAX_YAML_BYTES`,
not UTF-8 text, not YAML (whatever PyYAML raises), nested too deeply or self-referencing through an alias, or
not a mapping. Only ``yaml.safe_load`` is used, so no tag can build a Python object.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from utils.errors import file_error
from utils.gates.plain import check_plain

__all__ = ["MAX_YAML_BYTES", "read_yaml_mapping"]

MAX_YAML_BYTES = 1024**2  # a manifest or an expert set is a few hundred bytes


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (``what``: e.g. 'expert manifest', named in the errors)."""
    path = Path(path)
    if not path.exists():
        raise file_error(path, f"{what} not found")
    if not path.is_file():
        raise file_error(path, f"is not a file ({what} expected)")
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise file_error(path, f"is {size:,} bytes, too large for a YAML {what} (at most {MAX_YAML_BYTES:,})")
        text = path.read_bytes().decode("utf-8")
        node = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as err:
        raise file_error(path, f"cannot be read as UTF-8 text ({getattr(err, 'strerror', None) or type(err).__name__})") from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError) as err:
        raise file_error(path, f"is not readable YAML ({type(err).__name__})") from None
    check_plain(path, node, max_depth=32, max_nodes=100_000)
    if not isinstance(node, dict):
        raise file_error(path, f"is not a mapping of keys to values (a YAML {what} is one), got {type(node).__name__}")
    return node
