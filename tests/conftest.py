"""Shared test fixtures: the conformance data beside the repository and its skip policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CONFORMANCE = SHARED / "conformance"


def require_shared(path: Path) -> Path:
    """Return ``path`` under ``../shared``; skip when absent, but fail under ``CI=true``.

    Parameters
    ----------
    path
        A file or folder inside ``../shared``.

    Returns
    -------
    Path
        The same path, known to exist.
    """
    if path.exists():
        return path
    reason = f"shared reference data not found: {path}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the conformance data must be present)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def conformance() -> Path:
    """The ``../shared/conformance`` folder (skips locally when absent, fails on CI)."""
    return require_shared(CONFORMANCE)
