"""Hide credentials in source and output addresses before they are logged, served or written.

`rtsp://user:pass@camera/stream` is shown as `rtsp://user:***@camera/stream`; password-like parameters
(`?password=...`, `&token=...`, GStreamer's `user-pw=...`) keep their name and lose their value. The
text is otherwise unchanged, so a GStreamer pipeline with an RTSP location is redacted too.
`lineside run` also filters its console log through `redact` (`redact_logs`), so a message that
quotes the address (a source that cannot be opened, an actuator link lost) never shows a password.
"""

from __future__ import annotations

import logging
import re

HIDDEN = "***"
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/:@\s?#]*):[^/\s?#]*@")
_SECRET_PARAM = re.compile(
    r"(?P<key>(?<![A-Za-z0-9_])(?:pass|password|passwd|pwd|user-pw|secret|token|api[-_]?key|auth|access[-_]?token)"
    r"\s*=\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^&\s!;#]+)",
    re.IGNORECASE,
)


def redact(text: str | None) -> str | None:
    """`text` with URL passwords and password-like parameter values replaced by `***` (None stays None)."""
    if text is None:
        return None
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{HIDDEN}@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}{HIDDEN}", text)


class RedactingFilter(logging.Filter):
    """A handler filter that redacts every record's message (its arguments merged in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def redact_logs(logger: logging.Logger | None = None) -> None:
    """Give every handler of `logger` (default: the root logger) a RedactingFilter, once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
