"""Tests for napari_iconmat.core.io.lock: one writer per output folder, stale locks taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest

from napari_iconmat.core.errors import InputError
from napari_iconmat.core.io import OutputWriter
from napari_iconmat.core.io import lock as lock_module
from napari_iconmat.core.io.lock import LOCK_FILE, FolderLock

HOLD = """
import sys, time
from napari_iconmat.core.io.lock import FolderLock
held = FolderLock(sys.argv[1])
held.acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_second_lock_in_the_same_process_is_refused(tmp_path):
    first = FolderLock(tmp_path)
    first.acquire()
    with pytest.raises(InputError, match=rf"output folder {tmp_path} is in use by another iconmat run \(process {os.getpid()}"):
        FolderLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / ".iconmat").exists()  # nothing left behind
    with FolderLock(tmp_path):
        pass


def test_live_process_holds_the_folder_and_its_stale_lock_is_taken_over(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=f"in use by another iconmat run \\(process {holder.pid} "):
            FolderLock(tmp_path).acquire()
        writer = OutputWriter(tmp_path, ["png"])
        with pytest.raises(InputError, match="in use"):
            writer.write(0, np.zeros((2, 2)))
        assert not (tmp_path / "alpha").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / LOCK_FILE).exists()  # a killed holder leaves its file ...
    with pytest.warns(UserWarning, match=f"process {holder.pid}, which is no longer running"):
        FolderLock(tmp_path).acquire()  # ... which is taken over


def test_fallback_without_fcntl(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "fcntl", None)
    path = tmp_path / LOCK_FILE
    path.parent.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    path.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(), "since": "then"}))
    lock = FolderLock(tmp_path)
    with pytest.warns(UserWarning, match="stale lock"):
        lock.acquire()
    with pytest.raises(InputError, match="in use"):
        FolderLock(tmp_path).acquire()  # names this (live) process
    lock.release()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with FolderLock(tmp_path):
            pass
