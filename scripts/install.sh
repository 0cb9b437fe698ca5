#!/usr/bin/env bash
# Install lineside for development on a fresh Debian/Ubuntu machine (CPU only):
#   Debian tools the tests and the demo use (socat: virtual serial pairs; openssh-server: deploy tests;
#   Aravis: GenICam cameras and its fake GigE Vision camera; mosquitto: the MQTT broker of the --publish tests;
#   chromium + chromium-driver: the dashboard's headless-browser test),
#   a virtual environment in .venv with PyTorch (CPU use), ONNX tooling, TensorRT-RTX (AOT engine builds),
#   PLC libraries and the test tools, and lineside itself in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v socat >/dev/null || missing+=(socat)
# --publish mqtt:// tests start a real broker on 127.0.0.1
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing+=(mosquitto)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
# genicam:// (Aravis): the typelib, arv-tool and the fake GigE Vision camera the tests run; headers to build PyGObject
ls /usr/lib/*/girepository-1.0/Aravis-0.8.typelib >/dev/null 2>&1 || missing+=(gir1.2-aravis-0.8)
command -v arv-tool-0.8 >/dev/null || missing+=(aravis-tools-cli)
command -v arv-fake-gv-camera-0.8 >/dev/null || missing+=(aravis-tools)
{ command -v pkg-config >/dev/null && pkg-config --exists gobject-introspection-1.0 cairo; } ||
    missing+=(pkg-config libgirepository1.0-dev libcairo2-dev)
# the Jetson-install test: a --system-site-packages venv over the system's GStreamer OpenCV, as on JetPack
/usr/bin/python3 -c "import cv2, ensurepip" 2>/dev/null || missing+=(python3-opencv python3-venv gstreamer1.0-plugins-base)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else sudo=(false); fi
    echo "installing Debian packages: ${missing[*]}"
    if ! { "${sudo[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}"; }; then
        echo "warning: could not install ${missing[*]}; serial/deploy/browser/camera tests will be skipped" >&2
    fi
fi

PYTHON=${PYTHON:-python3}
[ -d .venv ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torchvision (needed by timm) pairs with this torch build; it runs on the CPU.
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q -e ".[train,export,tensorrt-rtx,plc,report,dashboard,dev,pylon,s7,opcua,mqtt]"
# PyGObject builds from source against the Debian headers above; without them only genicam:// is lost.
python -m pip install -q -e ".[genicam]" ||
    echo "warning: PyGObject did not build (libgirepository1.0-dev, libcairo2-dev?); genicam:// tests will be skipped" >&2
echo "lineside installed: $(lineside --version)  (activate with: . .venv/bin/activate)"
