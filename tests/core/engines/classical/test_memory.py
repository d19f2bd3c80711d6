"""Returning freed heap memory to the system during long runs."""

import platform
import sys

from napari_iconmat.core.engines.classical.memory import release_free_memory


def test_release_free_memory_trims_on_glibc_and_is_a_no_op_elsewhere():
    released = release_free_memory()
    assert isinstance(released, bool)
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert released
    assert release_free_memory() == released  # the library is looked up once, the call repeats
