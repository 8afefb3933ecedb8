"""The dashboard in a real browser: Debian's Chromium, headless, driven through chromedriver,
against the API under its production server. Every plot must draw data and the console must stay clean.
The screenshot is kept at var/dashboard.png for people to look at."""

from __future__ import annotations

import os
import shutil
import time

import pytest
import requests
from store_seeding import seed_run

from tools.processes import ROOT, ApiServer

pytestmark = pytest.mark.slow

CHARTS = ("latency", "sources", "experiment", "runs-quality", "runs-coverage", "runs-users", "runs-stages")
SCREENSHOT = ROOT / "var" / "dashboard.png"
BROWSER_HINT = (
    "the dashboard test drives Debian's chromium through chromium-driver; `make test` installs both "
    "(sudo apt-get install -y chromium chromium-driver)"
)


def history(redis_client) -> None:
    """Three published runs with manifests, the last one running an experiment with events."""
    shares = {"als": 0.5, "popular": 0.5}
    for day, ndcg in ((27, 0.18), (28, 0.19), (29, 0.21)):
        run_id = f"2026-11-{day}_202611{day}T020000000Z"
        manifest = {
            "metrics": {"k": 10, "als": {"ndcg_at_k": ndcg, "coverage": 0.1 + day / 1000},
                        "popularity": {"ndcg_at_k": 0.11, "coverage": 0.005}},
            "timings_seconds": {"prepare": 14.0, "train": 16.0 + day % 3, "evaluate": 40.0, "recommend": 30.0},
            "counts": {"prepared": {"users": 7000 + day * 10, "items": 5000, "pairs": 290000},
                       "input": {"rows_read": 300000}, "quarantine": {"rows": 9}},
        }  # fmt: skip
        lists = {variant: {f"u{i}": [(f"{variant}-{i}", 1.0)] for i in range(60)} for variant in shares}
        seed_run(redis_client, run_id, {}, [("p1", 9.0), ("p2", 8.0), ("p3", 7.0)], manifest=manifest,
                 experiment={"name": "ranking", "salt": "s", "control": "als", "shares": shares},
                 variant_lists=lists)  # fmt: skip


def traffic(base_url: str) -> None:
    """Lookups of every kind, and events about the lists they returned."""
    events = []
    for i in range(60):
        body = requests.get(f"{base_url}/v1/recommendations/u{i}?n=2", timeout=5).json()
        events.append({"user_id": f"u{i}", "item_id": body["items"][0]["item_id"], "type": "impression",
                       "rec_id": body["rec_id"]})  # fmt: skip
        if i % 3 == 0:
            events.append({**events[-1], "type": "click"})
        if i % 10 == 0:
            events.append({**events[-1], "type": "conversion"})
    for i in range(20):
        requests.get(f"{base_url}/v1/recommendations/stranger{i}?n=3", timeout=5)
    assert requests.post(f"{base_url}/v1/events", json=events, timeout=5).status_code == 202


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail(BROWSER_HINT, pytrace=False)
    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager look for drivers on the network
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1400", f"--user-data-dir={tmp_path / 'chromium'}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))
    yield driver
    driver.quit()


def test_every_plot_draws_data_and_the_console_stays_clean(browser, redis_server, redis_client, tmp_path):
    history(redis_client)
    server = ApiServer(redis_server.url, tmp_path / "api.log", api={"workers": 2, "threads": 2})
    server.start()
    try:
        traffic(server.url)
        browser.get(f"{server.url}/dashboard")
        deadline = time.monotonic() + 20
        state = {}
        while time.monotonic() < deadline:
            state = browser.execute_script("return window.dashboard")
            if all(state["rendered"].get(chart, 0) > 0 for chart in CHARTS):
                break
            time.sleep(0.2)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
        console = browser.get_log("browser")
    finally:
        server.stop()
    assert state["problems"] == [], state["problems"]
    assert all(state["rendered"].get(chart, 0) > 0 for chart in CHARTS), state["rendered"]
    assert state["rendered"]["runs-quality"] == 6, "two lines of three runs"
    assert state["rendered"]["experiment"] == 4, "CTR and conversion of two variants"
    assert [entry for entry in console if entry["level"] in ("SEVERE", "ERROR")] == []
    assert SCREENSHOT.stat().st_size > 10_000
