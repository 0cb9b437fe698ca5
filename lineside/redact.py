"""Hide credentials in source and output addresses before they are logged, served or written.

`rtsp://user:pass@camera/stream` is shown as `rtsp://***@camera/stream`; password-like parameters
(`?password=...`, `&token=...`, GStreamer's `user-pw=...`) keep their name and lose their value. The
text is otherwise unchanged, so a GStreamer pipeline with an RTSP location is redacted too.
"""

from __future__ import annotations

import re

HIDDEN = "***"
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#]+@")
_SECRET_PARAM = re.compile(
    r"(?P<key>(?<![A-Za-z0-9_])(?:pass|password|passwd|pwd|user-pw|secret|token|api[-_]?key|auth|access[-_]?token)"
    r"\s*=\s*)(?P<value>\"[^\"]*\"|'[^']*'|[^&\s!;#]+)",
    re.IGNORECASE,
)


def redact(text: str | None) -> str | None:
    """`text` with URL user info and password-like parameter values replaced by `***` (None stays None)."""
    if text is None:
        return None
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{HIDDEN}@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m['key']}{HIDDEN}", text)
