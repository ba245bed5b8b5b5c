"""Names from samples and gates become safe file names."""

from __future__ import annotations

import pytest

from engine.runtime import safe_name


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/abs/path", "a\x00b\nc", "..", "", "CD3+/CD8+", "naïve ✓", "x" * 500]
)
def test_unsafe_names_cannot_escape(name, tmp_path):
    safe = safe_name(name)
    assert safe and "/" not in safe and "\\" not in safe and not safe.startswith(".")
    assert all(32 < ord(ch) < 127 for ch in safe) and len(safe) <= 120
    target = (tmp_path / safe).resolve()
    assert target.parent == tmp_path.resolve()


def test_distinct_names_stay_distinct_and_plain_names_unchanged():
    assert safe_name("P01_pre") == "P01_pre"
    assert safe_name("a/b") != safe_name("a_b")
    assert safe_name("x" * 500) != safe_name("x" * 499)


def test_atomic_writes_leave_the_old_file_or_the_new_one_and_no_temporary(tmp_path):
    import os

    from engine.runtime import atomic_path, atomic_write_bytes, partial_name

    target = tmp_path / "run.json"
    assert partial_name(target).name == f".run.json.{os.getpid()}.partial"
    assert partial_name(target, suffix=".h5ad").name.endswith(".partial.h5ad")
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
