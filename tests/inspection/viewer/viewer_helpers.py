"""HTTP helper of the viewer tests (stdlib client: no httpx here)."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass
class Fetched:
    status: int
    headers: dict[str, str]
    body: str


def fetch(url: str, method: str = "GET") -> Fetched:
    req = urllib.request.Request(
        url, method=method, data=b"x" if method in ("POST", "PUT", "PATCH") else None
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return Fetched(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read().decode())
    except urllib.error.HTTPError as err:
        return Fetched(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read().decode())
