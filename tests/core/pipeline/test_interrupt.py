"""core/pipeline/interrupt.py: SIGINT deferred to safe points; numba's SystemError recognised."""

from __future__ import annotations

import os
import signal

import pytest

from napari_iconmat.core.pipeline.interrupt import check_interrupt, deferred_sigint, is_interrupt


def test_first_sigint_waits_for_a_safe_point_and_the_second_raises_at_once():
    with deferred_sigint():
        os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode: sets the flag only
        with pytest.raises(KeyboardInterrupt):
            check_interrupt()
        check_interrupt()  # cleared
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_numba_system_error_counts_as_an_interrupt():
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as inner:
            raise SystemError("CPUDispatcher(<function _cg>) returned a result with an exception set") from inner
    except SystemError as exc:
        assert is_interrupt(exc)
    assert not is_interrupt(SystemError("other"))
    assert not is_interrupt(ValueError("x"))
