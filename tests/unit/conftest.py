"""Unit tests run the client without retry pauses (the retry tests set their own)."""

import pytest

from agfs_fuse import session
from agfs_fuse.retry import Backoff


@pytest.fixture(autouse=True)
def no_retry_pauses(monkeypatch):
    monkeypatch.setattr(session, "Backoff", lambda: Backoff(budget=0))
