"""Reference queries: everything an engine computes once per reference, with a signature.

A :class:`ReferenceQuery` holds named arrays plus JSON metadata. It is saved as
one ``.npz`` file (no pickle) and carries a *signature*: the hash of the
reference pixels and prompt, the engine name and version, and the engine
parameters. Loading checks the signature key by key, so a query is never used
for a reference, engine or setting it was not built for.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, QueryMismatchError
from .io.writers import atomic_write_bytes

__all__ = ["ReferenceQuery", "reference_signature", "merged_signature", "hash_reference", "load_query"]

_META_KEY = "__meta__"
_FORMAT = "napari-iconmat-query/1"


def hash_reference(image: np.ndarray, prompt) -> str:
    """SHA-1 of the reference pixels (dtype, shape, values) and the prompt."""
    image = np.ascontiguousarray(image)
    digest = hashlib.sha1()
    digest.update(f"{image.dtype.str}{image.shape}".encode())
    digest.update(image.tobytes())
    digest.update(prompt.to_bytes())
    return digest.hexdigest()


def reference_signature(image: np.ndarray, prompt, *, engine: str, version: str, params: dict) -> dict:
    """The signature of a reference query: a flat JSON-able dict.

    Parameters
    ----------
    image : (H, W[, C]) ndarray
        The reference image as given.
    prompt : Prompt
    engine, version : str
        Engine registry name and version.
    params : dict
        JSON-serialisable engine parameters.
    """
    return {
        "reference_sha1": hash_reference(image, prompt),
        "engine": engine,
        "engine_version": version,
        "params": json.loads(json.dumps(params, sort_keys=True)),
    }


def merged_signature(signatures, times) -> dict:
    """The signature of one query conditioned on several references (:meth:`Engine.merge_queries`).

    Parameters
    ----------
    signatures : sequence of dict
        The references' own signatures (:func:`reference_signature`), the
        chain's own reference first; all of one engine, version and parameters.
    times : sequence of int
        Each reference's time on the chain's axis (the first is 0).

    Returns
    -------
    dict
        The first reference's signature alone when there is one reference;
        else that signature plus ``'conditioning'``: ``[time, reference_sha1]``
        of every reference, so it changes when any reference or time changes.
    """
    signatures, times = list(signatures), [int(t) for t in times]
    if not signatures or len(signatures) != len(times) or times[0] != 0:
        raise ValueError("merged_signature needs one time per signature, the first 0")
    first = dict(signatures[0])
    if len(signatures) == 1:
        return first
    for other in signatures[1:]:
        if any(other.get(k) != first.get(k) for k in ("engine", "engine_version", "params")):
            raise ValueError("merged_signature: the references were encoded by different engines or settings")
    first["conditioning"] = [[t, s["reference_sha1"]] for t, s in zip(times, signatures)]
    return first


def _signature_key(signature: dict) -> str:
    return hashlib.sha1(json.dumps(signature, sort_keys=True).encode()).hexdigest()


@dataclass
class ReferenceQuery:
    """Per-reference work of an engine, reusable on any number of frames.

    Attributes
    ----------
    signature : dict
        See :func:`reference_signature`.
    arrays : dict of str -> ndarray
        Engine-specific tensors (colour models, reference alpha, keypoints ...).
    meta : dict
        Engine-specific JSON-able values.
    """

    signature: dict
    arrays: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def engine(self) -> str:
        return self.signature["engine"]

    @property
    def key(self) -> str:
        """Short stable hash of the signature, used for cache file names."""
        return _signature_key(self.signature)[:16]

    def save(self, path) -> Path:
        """Write the query to ``path`` (``.npz``) atomically and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format": _FORMAT, "signature": self.signature, "meta": self.meta}
        payload = {name: np.ascontiguousarray(value) for name, value in self.arrays.items()}
        for name, value in payload.items():
            if value.dtype == object:
                raise TypeError(f"query array {name!r} has dtype object; only numeric arrays can be saved")
        payload[_META_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **payload)
        return atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path, *, expected: dict | None = None) -> "ReferenceQuery":
        """Read a query saved with :meth:`save`.

        Parameters
        ----------
        path : str or Path
        expected : dict, optional
            The signature the caller needs. Every key is compared; a difference
            raises :class:`QueryMismatchError` naming the key and both values.

        Raises
        ------
        InputError
            The file is missing or is not a readable query.
        QueryMismatchError
            The query's signature differs from ``expected``.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"reference query file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            header = json.loads(arrays.pop(_META_KEY).tobytes().decode())
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError, EOFError) as exc:
            raise InputError(f"{path} is not a readable reference query ({type(exc).__name__}: {exc})") from None
        if not isinstance(header, dict) or header.get("format") != _FORMAT or "signature" not in header:
            raise InputError(f"{path} is not a napari-iconmat reference query")
        query = cls(signature=header["signature"], arrays=arrays, meta=header.get("meta", {}))
        if expected is not None:
            check_signature(query.signature, expected, source=str(path))
        return query


def check_signature(found: dict, expected: dict, *, source: str = "query") -> None:
    """Raise :class:`QueryMismatchError` unless two signatures agree key by key."""
    for key in sorted(set(found) | set(expected)):
        a, b = found.get(key), expected.get(key)
        if a != b:
            if key == "reference_sha1":
                what = "a different reference image or prompt"
            else:
                what = f"{key} {a!r}, not {b!r}"
            raise QueryMismatchError(f"{source} was built for {what}: re-encode the reference (or drop the cached file)")


def load_query(path, *, expected: dict | None = None) -> ReferenceQuery:
    """Load a reference query from ``path``; see :meth:`ReferenceQuery.load`."""
    return ReferenceQuery.load(path, expected=expected)
