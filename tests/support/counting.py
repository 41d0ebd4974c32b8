"""Count a client's requests, and find the handles it left open, in front of any AGFS server.

The reference server can count requests itself (``--test-hooks``), the real one cannot, and
its ``GET /handles/`` always lists nothing. So tests that count put a relay between the
mount and the server (a :class:`~tests.support.faultproxy.FaultProxy` with no faults): it
sees every request, and every handle id the server hands out; a leak check then asks the
server about each of those ids (``GET /handles/{id}``: 200 while open, 404 once closed).

    relay = CountingRelay(server.url)     # mount relay.url instead of server.url
    before = relay.counts()
    ...                                   # run programs in the mount
    relay.delta(before)                   # {"GET /files": 3, "PUT /files": 1}
    relay.open_handles()                  # [] when every handle was closed
    relay.close()
"""

from __future__ import annotations

import httpx

from tests.support.faultproxy import FaultProxy

#: The relay lives as long as its owner (a session fixture may keep it for the whole run).
RELAY_LIFETIME = 6 * 3600.0


class CountingRelay:
    """A pass-through relay in front of ``server_url`` (``http://HOST:PORT/api/v1``)."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url.rstrip("/")
        self.proxy = FaultProxy(self.server_url, lifetime=RELAY_LIFETIME).start()
        self._http = httpx.Client(timeout=10.0)
        # A closed id stays closed: servers count ids up and never reuse one (until they
        # restart, which a relay's owner does not do), so a long run asks about each once.
        self._closed: set[int] = set()

    @property
    def url(self) -> str:
        """The URL to give the client instead of the server's."""
        return self.proxy.url

    def counts(self) -> dict[str, int]:
        """Requests relayed so far, by ``"METHOD /route"`` (handle ids as ``{id}``)."""
        return self.proxy.request_counts()

    def delta(self, before: dict[str, int]) -> dict[str, int]:
        """The requests relayed since ``before`` (a :meth:`counts`), without zeros."""
        after = self.counts()
        return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}

    def open_handles(self) -> list[int]:
        """The handles opened through the relay that the server still has open."""
        still_open = []
        for handle_id in self.proxy.opened_handles():
            if handle_id in self._closed:
                continue
            response = self._http.get(f"{self.server_url}/handles/{handle_id}")
            if response.status_code == 200:
                still_open.append(handle_id)
            elif response.status_code == 404:
                self._closed.add(handle_id)
            else:
                raise AssertionError(
                    f"GET /handles/{handle_id}: {response.status_code} {response.text[:200]}"
                )
        return still_open

    def close(self) -> None:
        """Stop the relay (idempotent)."""
        self._http.close()
        self.proxy.close()
