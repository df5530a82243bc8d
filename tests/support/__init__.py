"""What the tests share: real receivers, child processes, fakes, samples, strategies.

``REPO`` is the checkout's root, ``DATA`` the real Dovecot capture and the files it was
checked against (``tests/data``).
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
