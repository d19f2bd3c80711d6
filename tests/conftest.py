"""Fixtures shared by the test modules."""

import pytest

from napari_iconmat.core.engines.classical.engine import ClassicalEngine


@pytest.fixture
def encode_calls(monkeypatch):
    """A list that grows by one each time the classical engine encodes a reference."""
    calls = []
    original = ClassicalEngine.encode_reference

    def spy(self, image, prompt):
        calls.append(1)
        return original(self, image, prompt)

    monkeypatch.setattr(ClassicalEngine, "encode_reference", spy)
    return calls
