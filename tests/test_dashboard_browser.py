"""The dashboard in a real headless browser (Debian chromium + chromium-driver, driven by Selenium) while
`lineside run` inspects a synthetic video, and while a camera stream stalls and is reopened."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from runtime_support import MjpegCamera, free_port, make_bundle, render_part

from lineside.synth.video import write_parts_video

pytest.importorskip("starlette", reason="the dashboard needs its extra: pip install 'lineside[dashboard]'")
pytestmark = [pytest.mark.slow, pytest.mark.network]

LINESIDE = Path(sys.executable).with_name("lineside")
DEFECTS = [i % 5 == 2 for i in range(40)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium through the Debian chromedriver (an explicit path: nothing is downloaded)."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed: pip install 'lineside[dev]'"
    )
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("chromium / chromium-driver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1300,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` every 0.1 s until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_line(tmp_path: Path, source: str, port: int, *args: str) -> subprocess.Popen[str]:
    """`lineside run` on TMP/bundle with the page on 127.0.0.1:port, once the port accepts connections."""
    bundle = tmp_path / "bundle"
    if not bundle.exists():
        make_bundle(bundle)
    line = subprocess.Popen(
        [str(LINESIDE), "run", str(bundle), "--source", source, "--dashboard", f"127.0.0.1:{port}", "--quiet",
         "--log", str(tmp_path / "results.jsonl"), "--save-rejects", str(tmp_path / "rejects"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def accepting() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0 or line.poll() is not None

    wait_for(accepting, 60, "the dashboard port")
    assert line.poll() is None, line.communicate()
    return line


def page_state(driver: Any) -> dict[str, Any]:
    """The counters, badge, caption and loaded images as the browser shows them."""
    return driver.execute_script(
        """
        const text = (id) => document.getElementById(id).textContent;
        const loaded = (img) => !!img && img.complete && img.naturalWidth > 0;
        return {
          parts: parseInt(text("c-parts")) || 0, rejects: parseInt(text("c-rejects")) || 0,
          errors: parseInt(text("c-errors")) || 0, state: text("state"), caption: text("verdict"),
          details: text("details"), updates: parseInt(document.body.dataset.updates || "0"),
          frame: loaded(document.getElementById("frame")),
          cards: [...document.querySelectorAll("#rejects .card")].map((card) => ({
            part: parseInt(card.dataset.part), text: card.textContent,
            image: loaded(card.querySelector("img.image")), heatmap: loaded(card.querySelector("img.heatmap")),
          })),
        };
        """
    )


def test_page_follows_a_line_replaying_a_video(browser: Any, tmp_path: Path):
    video = tmp_path / "parts.avi"
    write_parts_video(video, (render_part(defect, seed) for seed, defect in enumerate(DEFECTS)), fps=5)
    port = free_port()
    line = start_line(tmp_path, str(video), port, "--rate", "5")
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        first = wait_for(lambda: (s := page_state(browser))["parts"] > 0 and s, 20, "the first counted part")
        later = wait_for(
            lambda: (s := page_state(browser))["parts"] >= first["parts"] + 5 and s, 20, "counters to advance"
        )
        assert later["state"] == "running", later
        wait_for(lambda: page_state(browser)["frame"], 10, "the live frame with its heatmap")  # reloads per update
        assert later["caption"].split()[0] in ("PASS", "REJECT") and " part " in later["caption"]
        shown = wait_for(
            lambda: [c for c in page_state(browser)["cards"] if c["image"] and c["heatmap"]], 20, "a rejected part"
        )
        assert shown[0]["part"] % 5 == 2 and "REJECT" in shown[0]["text"] and "score 0.9" in shown[0]["text"]
        browser.save_screenshot(str(tmp_path / "dashboard.png"))
        out, err = line.communicate(timeout=60)
    finally:
        line.kill()
    assert line.returncode == 0, err
    summary = json.loads(out.splitlines()[-1])
    final = wait_for(lambda: (s := page_state(browser))["state"].startswith("line stopped") and s, 10, "the stop event")
    assert (
        (final["parts"], final["rejects"], final["errors"])
        == (40, 8, 0)
        == (summary["decisions"], summary["verdicts"]["REJECT"], summary["verdicts"]["ERROR"])
    )
    assert [c["part"] for c in final["cards"]] == [37, 32, 27, 22, 17, 12, 7, 2]
    again = start_line(tmp_path, str(video), port, "--rate", "10", "--max-parts", "30")  # the line restarts
    try:
        again.communicate(timeout=60)
    finally:
        again.kill()
    restarted = wait_for(
        lambda: (s := page_state(browser))["parts"] == 30 and s["state"].startswith("line stopped") and s,
        20,
        "the page to follow the restarted line",
    )
    assert [c["part"] for c in restarted["cards"]] == [27, 22, 17, 12, 7, 2]


def test_page_keeps_working_while_the_source_stalls(browser: Any, tmp_path: Path):
    camera = MjpegCamera(fps=10, stall_after=15).start()  # the first connection hangs after 15 frames
    port = free_port()
    line = start_line(tmp_path, camera.url, port, "--rate", "10", "--stall-s", "2", "--max-parts", "70")
    samples = []
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        while line.poll() is None:
            samples.append((time.monotonic(), page_state(browser)))
            time.sleep(0.2)
        out, err = line.communicate(timeout=30)
    finally:
        line.kill()
        camera.stop()
    assert line.returncode == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["outages"] >= 1 and summary["missed"] >= 1
    # while no part arrived for over a second, the page still received its updates
    quiet = [
        (later[1]["updates"] - early[1]["updates"], later[0] - early[0])
        for early, later in zip(samples, samples[6:], strict=False)
        if early[1]["parts"] == later[1]["parts"] > 0
    ]
    assert any(updates >= 2 and seconds >= 1.0 for updates, seconds in quiet), quiet
    assert all("connection lost" not in s["state"] for _, s in samples)
    final = wait_for(lambda: (s := page_state(browser))["state"].startswith("line stopped") and s, 10, "the stop event")
    assert final["parts"] == summary["decisions"] and final["errors"] == summary["verdicts"]["ERROR"] >= 1
    assert f"missed {summary['missed']} | source outages {summary['outages']}" in final["details"]
    stalled_at = next(s["parts"] for _, s in samples if s["parts"] >= 15)
    assert final["parts"] > stalled_at + 10  # inspection went on after the source was reopened
