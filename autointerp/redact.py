"""Keep secrets out of everything autointerp writes: the database, logs and exports.

Three kinds of secret are removed from text: the API keys the process read (registered by the backend
that read them), ``Authorization: Bearer ...`` values, and the user info of URLs
(``http://user:SECRET@host``), which a server's error body or a ``--base-url`` may carry.
"""

from __future__ import annotations

import base64
import logging
import re
from urllib.parse import unquote, urlsplit

MASK = "***"
#: Shorter values are not registered: redacting them would mangle ordinary text ("none", "EMPTY").
MIN_SECRET_LENGTH = 8

_USERINFO = re.compile(r"(?<=://)[^/\s@'\"<>]+@")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s'\",;}\]]+")
_BASIC = re.compile(r"(?i)\b(basic\s+)[A-Za-z0-9+/]{8,}=*")  # base64 of user:password
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Redact ``value`` (an API key this process read) from all text written from now on."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        _secrets.add(value)


def register_url_credentials(url: str | None) -> None:
    """Redact the user info of ``url`` from all text written from now on, also as the base64 of HTTP
    Basic credentials, which is how a client sends it (and how a server may echo it)."""
    if not url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    if parts.username is None:
        return
    userinfo = parts.netloc.rsplit("@", 1)[0]
    register_secret(userinfo)
    register_secret(parts.password)
    basic = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    register_secret(base64.b64encode(basic.encode()).decode())


def redact(text: str | None) -> str | None:
    """``text`` with registered secrets, bearer tokens and URL user info replaced by ``***``."""
    if not text:
        return text
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(MASK + "@", text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return _BASIC.sub(lambda m: m.group(1) + MASK, text)


def redact_sql(column: str) -> str:
    """A DuckDB expression of ``column`` (text) with bearer tokens and URL user info redacted, for
    data written before redaction existed (exports). Registered secrets are redacted too."""
    expr = f"regexp_replace(CAST({column} AS VARCHAR), '://[^/\\s@''\"<>]+@', '://{MASK}@', 'g')"
    expr = f"regexp_replace({expr}, '(?i)\\b(bearer\\s+)[^\\s''\",;}}\\]]+', '\\1{MASK}', 'g')"
    expr = f"regexp_replace({expr}, '(?i)\\b(basic\\s+)[A-Za-z0-9+/]{{8,}}=*', '\\1{MASK}', 'g')"
    for secret in sorted(_secrets, key=len, reverse=True):
        expr = f"replace({expr}, '{secret.replace(chr(39), chr(39) * 2)}', '{MASK}')"
    return expr


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (attach it to the handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def install_log_redaction() -> None:
    """Redact every record the root logger's handlers write."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
