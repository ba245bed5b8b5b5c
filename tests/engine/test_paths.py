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
