"""Credentials in source / output addresses are hidden wherever they are shown."""

from __future__ import annotations

import logging

import pytest

from lineside.redact import RedactingFilter, redact


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/Streaming/101", "rtsp://admin:***@10.0.0.5:554/Streaming/101"),
        ("rtsp://u:p@ss@cam/s", "rtsp://u:***@cam/s"),  # an unescaped @ in the password
        ("http://cam/mjpg?user=op&password=hunter2&fps=5", "http://cam/mjpg?user=op&password=***&fps=5"),
        ("http://cam/x?PWD=a&api_key=b&token=c", "http://cam/x?PWD=***&api_key=***&token=***"),
        (
            "rtspsrc location=rtsp://op:pw@cam/s user-id=op user-pw=hunter2 ! decodebin ! appsink",
            "rtspsrc location=rtsp://op:***@cam/s user-id=op user-pw=*** ! decodebin ! appsink",
        ),
        (
            "opcua://line@plc:4840/ns=2;s=Reject?password_env=PLC_PW",
            "opcua://line@plc:4840/ns=2;s=Reject?password_env=PLC_PW",
        ),
        ("0", "0"),
        ("/data/line 3/parts.avi", "/data/line 3/parts.avi"),
        ("serial:///dev/ttyUSB0?protocol=lcus&channel=1", "serial:///dev/ttyUSB0?protocol=lcus&channel=1"),
        ("modbus+tcp://10.0.0.9:502?coil=3", "modbus+tcp://10.0.0.9:502?coil=3"),
    ],
)
def test_redact_hides_passwords_and_keeps_the_rest(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redacting_filter_cleans_formatted_log_messages() -> None:
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "cannot open %s: %s", ("rtsp://a:b@c/s", "timeout"), None
    )
    assert RedactingFilter().filter(record) and record.getMessage() == "cannot open rtsp://a:***@c/s: timeout"
    assert redact(None) is None
