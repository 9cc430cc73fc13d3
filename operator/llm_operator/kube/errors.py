"""The one error type of both clients: the API answered with an HTTP error."""

from __future__ import annotations

import json


class KubeError(RuntimeError):
    def __init__(self, status: int, body: str, reason: str = ""):
        super().__init__(f"{status} {reason}: {body[:500]}" if reason else f"{status}: {body[:500]}")
        self.status = status
        self.reason = reason
        self.body = body

    def api_message(self) -> str:
        """The apiserver's own message from a Status body (else the body as it came)."""
        try:
            return str(json.loads(self.body).get("message") or self.body)[:800]
        except (ValueError, AttributeError):
            return self.body[:800]
