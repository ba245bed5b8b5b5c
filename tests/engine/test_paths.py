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


def test_threads_writing_the_same_file_use_their_own_temporaries(tmp_path):
    """Threaded batch workers: two threads writing one file never share a temporary, and a
    thread's leftover is swept only when its process is gone."""
    import os
    import threading

    from engine.runtime import atomic_write_bytes, partial_name, remove_stale_partials

    target = tmp_path / "part.parquet"
    names: list[str] = []
    barrier = threading.Barrier(4)

    def write(k: int) -> None:
        names.append(partial_name(target).name)
        barrier.wait()
        atomic_write_bytes(target, bytes([k]) * 1000)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 4 and partial_name(target).name not in names
    assert len(set(target.read_bytes())) == 1 and target.stat().st_size == 1000  # one whole write
    assert [p.name for p in tmp_path.iterdir()] == ["part.parquet"]
    live = tmp_path / f".x.csv.{os.getpid()}.t123.partial"
    dead = tmp_path / f".x.csv.{2**22 + 12345}.t123.partial"
    live.write_text("a")
    dead.write_text("b")
    assert remove_stale_partials(tmp_path) == [dead] and live.exists()
