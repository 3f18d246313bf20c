"""Fixtures of the bisect unit tests (helpers in lab.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.bisect.lab import History, make_history


@pytest.fixture
def history(tmp_path: Path) -> History:
    return make_history(tmp_path)
