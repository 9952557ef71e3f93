"""The page at GET / in a real browser: Debian's chromium, headless, driven by Playwright.

The page is the one part of the service whose behaviour lives in JavaScript, so it is tested
where that JavaScript runs: the real service (tiny exported model) serves the page, the browser
uploads a real clip through the page's own file input, and what the page renders must equal
what the JSON form answers for the same clip. The browser is offline apart from the service:
every request the page makes must go to the service itself (no CDN, no web fonts).

Playwright's own browser download is not used (this machine cannot reach it): the test drives
the system chromium through `executable_path`; requirements/browser.sh installs it.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from serving.pipeline.protocol import MODES
from tests.service_client import (
    HTTP_TIMEOUT_S,
    TestService,
    b64,
    classify,
    post,
    tiny_model_dir,
)
from tests.video_corpus import encode_video

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: `make test` installs it (requirements/browser.sh)")

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "output" / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# A classification of the tiny model takes well under a second; the rest is headroom for a
# busy test machine.
RESULT_TIMEOUT_MS = 60_000


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium browser on this machine: run `bash requirements/browser.sh` as root "
                "(apt-get install chromium) to enable the browser test")


@pytest.fixture(scope="module")
def service(tmp_path_factory, calibrate_bn) -> Iterator[TestService]:
    model_dir = tiny_model_dir(tmp_path_factory, calibrate_bn)
    with TestService(model_dir, tmp_path_factory.mktemp("page-service")) as process:
        yield process


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("page-clips")
    broken = folder / "broken.mp4"
    broken.write_bytes(b"this is not a video " * 200)
    return {"short": encode_video(folder / "short.mp4", num_frames=24, seed=1),
            "long": encode_video(folder / "long.mp4", num_frames=72, seed=2),
            "broken": broken}


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory) -> Iterator[object]:
    executable = _chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1200, "height": 900})
        yield context
        context.close()


@pytest.fixture
def page(browser_context, service: TestService) -> Iterator[object]:
    """The page as a user opens it, with every request it makes and every script error recorded."""
    base = f"http://127.0.0.1:{service.http_port}/"
    page = browser_context.new_page()
    requested: list[str] = []
    script_errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    response = page.goto(base)
    assert response is not None and response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    yield page
    page.close()
    assert script_errors == []
    assert [url for url in requested if not url.startswith((base, "blob:"))] == []


def _classify_in_page(page, clip: Path, **options: str) -> None:
    for name, value in options.items():
        field = page.locator(f"[name={name}]")
        if field.evaluate("node => node.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    page.set_input_files("#file-input", str(clip))
    page.click("#submit")
    page.wait_for_selector("#result:not([hidden]), #error:not([hidden])", timeout=RESULT_TIMEOUT_MS)


def test_page_shows_the_services_answer_for_an_upload(page, service, clips) -> None:
    expected = classify(service, clips["short"], topk="3")
    metadata = requests.get(f"http://127.0.0.1:{service.http_port}/pptsm/metadata",
                            timeout=HTTP_TIMEOUT_S).json()
    page.wait_for_function(
        f"document.getElementById('model-info').textContent.includes({metadata['name']!r})")
    header = page.inner_text("#model-info")
    assert f"version {metadata['version']}" in header and metadata["precision"] in header

    _classify_in_page(page, clips["short"], topk="3", mode="uniform")

    assert page.is_hidden("#error")
    assert page.inner_text("#top1-label") == expected["label"]
    ranked = json.loads(expected["topk"])
    rows = page.locator("#topk-list li")
    assert rows.locator(".label").all_inner_texts() == [entry["label"] for entry in ranked]
    assert rows.locator(".score").all_inner_texts() == [
        f"{100 * entry['score']:.1f} %" for entry in ranked]
    stages = [cell.split("\t")[0].strip() for cell in page.locator("#timing-rows tr").all_inner_texts()]
    assert stages[:-2] == list(json.loads(expected["timing_ms"]))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)


def test_page_shows_the_services_error_message(page, service, clips) -> None:
    expected = post(service, ["video"], [b64(clips["broken"])])
    assert expected["err_no"] != 0

    _classify_in_page(page, clips["broken"])

    assert page.is_hidden("#result")
    assert page.inner_text("#error-message") == expected["err_msg"]
    assert f"err_no {expected['err_no']}" in page.inner_text("#error-title")


@pytest.mark.skipif("timeline" not in MODES,
                    reason="this build of the service has no timeline mode")
def test_page_draws_the_timeline(page, service, clips) -> None:
    options = {"window_s": "1", "stride_s": "0.5", "min_score": "0"}
    expected = classify(service, clips["long"], mode="timeline", **options)
    segments = json.loads(expected["segments"])
    assert segments

    _classify_in_page(page, clips["long"], mode="timeline", **options)

    assert page.is_visible("#timeline-block")
    assert page.locator("#timeline-bar .seg").all_inner_texts() == [
        segment["label"] for segment in segments]
    drawn = page.locator("#segment-list li").evaluate_all(
        "items => items.map(item => [Number(item.dataset.startS), Number(item.dataset.endS),"
        " Number(item.dataset.classId)])")
    assert drawn == [[segment["start_s"], segment["end_s"], segment["class_id"]]
                     for segment in segments]
    assert page.locator("#window-rows tr").count() == len(json.loads(expected["timeline"]))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-timeline.png"), full_page=True)
