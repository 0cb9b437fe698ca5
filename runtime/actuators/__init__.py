"""Reject-signal outputs selected by URL (serial, Modbus, GPIO, log)."""
