"""Test settings shared by every test module."""

from __future__ import annotations

import pytest
from hypothesis import settings

# The machines are shared and noisy: no per-example wall-clock deadline.
settings.register_profile("default", deadline=None)
settings.load_profile("default")


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the backend the program uses)."""
    return "asyncio"
