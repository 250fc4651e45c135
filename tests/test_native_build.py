"""The shared C build helper: cache by content, atomic output, clear errors (no compiler, bad source)."""
from __future__ import annotations

import ctypes
import shutil

import pytest

from minrnn.scan import build as native

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="no C compiler")


def test_compile_cache_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MINRNN_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "add.c"
    src.write_text("int add3(int x) { return x + 3; }\n")
    flags = ["-O2", "-shared", "-fPIC"]
    a = native.compile_library("t", [src], flags)
    assert ctypes.CDLL(str(a)).add3(4) == 7
    assert native.compile_library("t", [src], flags) == a  # cached: same content, same path
    assert [p.name for p in a.parent.iterdir()] == [a.name]  # no temp file left behind
    src.write_text("int add3(int x) { return x + 30; }\n")
    b = native.compile_library("t", [src], flags)
    assert b != a and ctypes.CDLL(str(b)).add3(4) == 34  # new content, new library
    src.write_text("int add3(int x) { return x + ; }\n")
    with pytest.raises(RuntimeError, match="compiling t failed"):
        native.compile_library("t", [src], flags)
    assert sorted(p.name for p in a.parent.iterdir()) == sorted([a.name, b.name])
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    src.write_text("int add3(int x) { return x; }\n")
    with pytest.raises(RuntimeError, match="expected an executable"):
        native.compile_library("t", [src], flags)
