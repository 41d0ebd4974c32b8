"""Request bodies read under the server's size limit, raw or as a Go JSON struct.

The limit and its 413 text are the server's, not a route's, so every route that reads
a body goes through one ``BodyReader`` and answers an oversized body the same way.
"""

from __future__ import annotations

from typing import Any

from agfs_fuse.server.httpio import Response
from agfs_fuse.server.httprequest import BodyError, BodyTooLarge, Request
from agfs_fuse.server.jsonbody import JSONBodyError, decode
from agfs_fuse.server.routes.replies import error


class BodyReader:
    """Reads bodies of at most ``max_body`` bytes; failures come back as the answer."""

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body

    def raw(self, req: Request, invalid: str) -> bytearray | Response:
        """The whole body, or the answer: 413 when too large, 400 ``invalid`` when cut.

        Both failures close the connection: the rest of the body was never read.
        """
        try:
            return req.body.read_all(self.max_body)
        except BodyTooLarge:
            return error(
                413, f"request body exceeds maximum size of {self.max_body} bytes", close=True
            )
        except (BodyError, OSError):
            return error(400, invalid, close=True)

    def json(
        self, req: Request, struct: str, fields: dict[str, str], invalid: str, detail: bool = False
    ) -> dict[str, Any] | Response:
        """The body decoded into the Go struct ``struct`` (see ``jsonbody.decode``).

        Some Go handlers append the decoder's error to ``invalid`` and some do not:
        ``detail`` says which.
        """
        raw = self.raw(req, invalid)
        if isinstance(raw, Response):
            return raw
        try:
            return decode(raw, struct, fields)
        except JSONBodyError as exc:
            return error(400, f"{invalid}: {exc}" if detail else invalid)
