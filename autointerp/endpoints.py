"""Reading ``--base-url``: one OpenAI-compatible endpoint or several, each with an optional cap.

``http://h1:8000/v1,http://h2:8000/v1@16`` names two endpoints; ``@16`` caps the second at 16
requests in flight. An endpoint without a cap has no limit of its own (the queue's --max-in-flight
bounds the total) and, when requests are spread, counts as large as the largest cap given.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .errors import AutointerpError

EXAMPLE = "http://h1:8000/v1,http://h2:8000/v1@16"


@dataclass(frozen=True)
class EndpointSpec:
    url: str
    limit: int | None = None
    """Most requests in flight on this endpoint; None for no cap of its own."""


def parse_endpoints(spec: str) -> list[EndpointSpec]:
    """``"URL[@N],URL[@N],..."`` -> one ``EndpointSpec`` per URL; ``""`` -> ``[]`` (the API's default URL)."""
    if not spec.strip():
        return []
    specs = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            raise AutointerpError(
                f"--base-url {spec!r} has an empty entry.",
                f"comma-separated URLs, e.g. {EXAMPLE}.",
                "remove the stray comma.",
            )
        specs.append(_one(part))
    seen = set()
    for s in specs:
        if s.url in seen:
            raise AutointerpError(
                f"--base-url names {redact(s.url)} twice.",
                "each endpoint once.",
                "give it once, with a larger @N cap if it should take more requests.",
            )
        seen.add(s.url)
    return specs


def _one(part: str) -> EndpointSpec:
    url, limit = part, None
    head, sep, tail = part.rpartition("@")
    if sep and tail.isdigit():  # URL@N; an @ inside the host part is user info, not a cap
        url, limit = head, int(tail)
        if limit < 1:
            raise AutointerpError(
                f"--base-url {redact(url)}@{tail}: the cap is {limit}.",
                "a cap of 1 or more requests in flight, e.g. @16.",
            )
    elif sep and "@" in urlsplit(part).path:
        raise AutointerpError(
            f"--base-url {redact(part)}: cannot read the cap after '@'.",
            f"URL or URL@N with N a whole number, e.g. {EXAMPLE}.",
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AutointerpError(
            f"--base-url {redact(url)!r} is not an http(s) URL.",
            f"a URL such as http://127.0.0.1:8000/v1; several: {EXAMPLE}.",
        )
    return EndpointSpec(url, limit)


def redact(url: str) -> str:
    """The URL without user info, query or fragment: what logs and error messages may show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
    except ValueError:  # an unreadable port: show nothing of the URL but its scheme
        return f"{url.split(':', 1)[0]}://?"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
