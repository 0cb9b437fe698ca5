"""pyserial URL handlers for fault tests: `dead://` (see protocol_dead). Importing this package registers them."""

import serial

if __name__ not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append(__name__)
