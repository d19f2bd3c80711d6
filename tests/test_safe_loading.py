"""Nothing the tool loads (checkpoints, cached queries, manifests, track states, parts) can run code.

A static check over the package's source (every ``np.load`` passes
``allow_pickle=False``, every ``torch.load`` ``weights_only=True``; no pickle,
marshal, shelve or yaml.load), and files carrying a pickle payload that would
leave a marker file if it ever ran.
"""

from __future__ import annotations

import ast
import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import napari_iconmat
from napari_iconmat.core.errors import InputError
from napari_iconmat.core.io import OutputWriter
from napari_iconmat.core.io.manifest import load_arrays
from napari_iconmat.core.reference import ReferenceQuery

PACKAGE = Path(napari_iconmat.__file__).parent


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
            yield node.lineno, name, keywords


def test_no_unsafe_loader_in_the_package():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, name, keywords in _calls(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(PACKAGE)}:{line} {name}"
            if name in ("np.load", "numpy.load") and keywords.get("allow_pickle") != "False":
                problems.append(where + " without allow_pickle=False")
            if name == "torch.load" and keywords.get("weights_only") != "True":
                problems.append(where + " without weights_only=True")
            if name in ("pickle.load", "pickle.loads", "marshal.load", "marshal.loads", "shelve.open", "yaml.load",
                        "yaml.unsafe_load", "dill.load", "joblib.load", "eval", "exec"):  # fmt: skip
                problems.append(where)
    assert problems == []


class _Payload:
    """Unpickling this creates the marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def _npz_with_payload(marker: Path, **arrays) -> bytes:
    buffer = io.BytesIO()
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(marker)
    np.savez(buffer, payload=payload, **arrays)
    return buffer.getvalue()


def test_pickled_payloads_are_refused(tmp_path):
    marker = tmp_path / "code-ran"
    # a cached reference query with a valid header and a pickled array
    header = {"format": "napari-iconmat-query/1", "signature": {}, "meta": {}}
    query = tmp_path / "query.npz"
    query.write_bytes(_npz_with_payload(marker, __meta__=np.frombuffer(json.dumps(header).encode(), np.uint8)))
    with pytest.raises(InputError, match="not a readable reference query"):
        ReferenceQuery.load(query)
    # a track-state checkpoint of a resumable run
    state = tmp_path / "state-1-3.npz"
    state.write_bytes(_npz_with_payload(marker, gray=np.zeros((2, 2), np.uint8)))
    with pytest.raises(InputError, match="not a readable checkpoint"):
        load_arrays(state)
    # a per-frame part waiting to be assembled into a TIFF
    writer = OutputWriter(tmp_path / "out", ["tiff"])
    writer.write(0, np.zeros((4, 4)))
    part = tmp_path / "out" / ".iconmat" / "parts" / "alpha" / "00000.npy"
    with open(part, "wb") as handle:
        np.save(handle, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="00000.npy"):
        writer.close()
    # a pickle where a manifest is expected is just unreadable JSON
    (tmp_path / "out" / "iconmat-run.json").write_bytes(pickle.dumps(_Payload(marker)))
    assert not marker.exists()
