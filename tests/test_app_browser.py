"""`stave app` in a real browser: the command serves the page on a free local port, headless Chromium (Debian's
chromium and chromium-driver, driven by Selenium) uploads a generated clip, asks two models, waits for the streamed
answers and checks them against `stave ask` run with the settings the page shows; the frame strip holds the
frames the settings ask for; a corrupt file, a file over the upload limit and a model folder that does not load
show their named errors; the next request (a sample clip) still works.

Needs gradio (`stave[app]`), selenium and Chromium; where one is missing the test skips, naming it — and fails
instead where STAVE_EXPECT_BROWSER=1 (scripts/test.sh sets it when it could install them). With
STAVE_APP_SCREENSHOT=PATH it also saves the page after the first answer there (README's docs/app.png).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from stave.cli import main

EXPECT_BROWSER = os.environ.get("STAVE_EXPECT_BROWSER") == "1"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
STARTUP_SECONDS = 180  # importing gradio and torch on a busy 2-core machine
ANSWER_SECONDS = 120


def skip_browser(reason: str) -> None:
    if EXPECT_BROWSER:
        pytest.fail(f"STAVE_EXPECT_BROWSER=1, but {reason}")
    pytest.skip(f"no browser test: {reason}")


def browser_or_skip():
    for module, extra in (("gradio", "pip install 'stave[app]'"), ("selenium", "pip install selenium")):
        if importlib.util.find_spec(module) is None:
            skip_browser(f"{module} is not installed ({extra})")
    binary = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        skip_browser("Chromium or chromedriver is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(driver))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, seconds: float, what: str, server: subprocess.Popen | None = None):
    """check()'s first true value within `seconds`; an element the page re-rendered meanwhile is looked up again."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = check()
        except StaleElementReferenceException:
            value = None
        if value:
            return value
        if server is not None and server.poll() is not None:
            pytest.fail(f"stave app exited ({server.returncode}) while waiting for {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {seconds} s waiting for {what}")


def sta_variant(path: Path) -> Path:
    """The shipped base with randomly initialised STA: a model with temporal attention to show."""
    from transformers import AutoTokenizer

    import stave
    from stave.base import TINY_BASE
    from stave.config import TemporalConfig

    model = stave.add_temporal_attention(stave.load_model(TINY_BASE), TemporalConfig(init="random"))
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(TINY_BASE).save_pretrained(path)
    return path


def test_the_page_in_a_browser_answers_as_stave_ask_and_reports_bad_input(tmp_path, capsys, monkeypatch):
    browser = browser_or_skip()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from stave.base import TINY_BASE
    from stave.synthetic import generate
    from stave.video import VideoOptions

    # `stave app` without --model, run where the last `stave demo` run left its two models (here the base as the
    # baseline arm's, and the base with random STA as the STA arm's): they are served side by side
    screenshot = os.environ.get("STAVE_APP_SCREENSHOT") and Path(os.environ["STAVE_APP_SCREENSHOT"]).resolve()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    env["PYTHONPATH"] = os.pathsep.join(  # absolute: the server runs in tmp_path (scripts/test.sh's are relative)
        [str(Path(p).resolve()) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    monkeypatch.chdir(tmp_path)
    demo = Path("runs/demo")
    baseline = shutil.copytree(TINY_BASE, demo / "train/baseline/baseline/model")
    arms = {"baseline": {"model": str(baseline)}, "staveq2": {"model": str(sta_variant(demo / "train/staveq2/model"))}}
    (demo / "demo.json").write_text(json.dumps({"arms": arms}))
    generate(tmp_path / "clips", n=10, seed=3, tasks=("still",), val_fraction=0.0)
    clip = tmp_path / "clips" / "videos" / "00000.mp4"
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)

    port = free_port()
    command = [sys.executable, "-m", "stave.cli", "app", "--port", str(port), "--samples", "4", "--max-upload-mb", "5"]
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"

    def serving() -> bool:
        try:
            return urllib.request.urlopen(url, timeout=2).status == 200
        except OSError:
            return False

    def status() -> str:
        return browser.find_element(By.CSS_SELECTOR, "#status").text.strip()

    def answer(side: str) -> str:
        return browser.find_element(By.CSS_SELECTOR, f"#answer-{side} textarea").get_property("value")

    def ask_and_wait(outcome: str) -> str:
        """Ask, and wait for the status line to say `outcome` (each request here ends in another one than the last)."""
        browser.find_element(By.CSS_SELECTOR, "#ask").click()
        return wait_for(lambda: status() if outcome in status() else None, ANSWER_SECONDS, outcome, server)

    def choose(dropdown: str, label: str) -> None:
        browser.find_element(By.CSS_SELECTOR, f"{dropdown} input").click()
        options = f"{dropdown} [role=option][aria-label='{label}']"
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, options)[0].click() or True, 10, f"{label} to click")

    def uploaded() -> str | None:
        names = browser.find_elements(By.CSS_SELECTOR, "#video td.filename")
        return names[0].get_attribute("aria-label") if names else None

    def stave_ask_of(side: str) -> str:
        """What `stave ask` prints, run with the command line the page shows with the answer."""
        code = f"#settings-{side} code"
        shown = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, code)[-1].text, 10, "the settings")
        argv = shlex.split(shown)
        assert argv[:2] == ["stave", "ask"], shown
        assert main(argv[1:]) == 0
        return capsys.readouterr().out.removesuffix("\n")

    try:
        wait_for(serving, STARTUP_SECONDS, "stave app to serve", server)
        browser.get(url)
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#ask"), 30, "the page")
        selected = [
            e.get_property("value") for e in browser.find_elements(By.CSS_SELECTOR, "#model-a input, #model-b input")
        ]
        assert selected == [arms["baseline"]["model"], arms["staveq2"]["model"]]
        defaults = {k: browser.find_element(By.CSS_SELECTOR, f"#{k} input").get_property("value")
                    for k in ("frames-n", "min-pixels", "max-pixels")}  # fmt: skip
        assert defaults == {"frames-n": "8", "min-pixels": "7056", "max-pixels": "7056"}  # the base's recipe

        # a generated clip, two models, the same frames
        browser.find_element(By.CSS_SELECTOR, "#video input[type=file]").send_keys(str(clip))
        wait_for(lambda: uploaded() == clip.name, 30, "the upload")
        question = "Where is the object vertically? Answer with one of: top, middle, bottom."
        browser.find_element(By.CSS_SELECTOR, "#question textarea").send_keys(question)
        assert ask_and_wait("Done").startswith("Done in")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#frames img")) == 8
        strip = browser.find_element(By.CSS_SELECTOR, "#frames").text
        assert "8 frames, 84 x 84 pixels each after resizing" in strip and "1.75 s" in strip
        answers = {side: wait_for(lambda s=side: [answer(s)], 10, "the answer")[0] for side in "ab"}
        assert answers["a"] in ("top", "middle", "bottom"), answers  # the base answers what it was trained on
        for side in "ab":
            assert answers[side] == stave_ask_of(side), side
        import transformers  # the server runs on the transformers under test (PYTHONPATH passed on)

        assert f"transformers {transformers.__version__}," in browser.find_element(By.CSS_SELECTOR, "#settings-a").text
        maps = {s: browser.find_elements(By.CSS_SELECTOR, f"#attention-{s} img") for s in "ab"}
        assert not maps["a"] and maps["b"] and maps["b"][0].get_property("naturalWidth") > 200  # only B has STA
        picture = tmp_path / "app.png"
        browser.set_window_size(1400, 1500)
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(picture))
        assert picture.stat().st_size > 20_000
        if screenshot:
            from PIL import Image

            Image.open(picture).convert("RGB").quantize(96).save(screenshot, optimize=True)

        # a corrupt file: its named error on the page
        browser.find_element(By.CSS_SELECTOR, "#video button[aria-label=Clear]").click()
        browser.find_element(By.CSS_SELECTOR, "#video input[type=file]").send_keys(str(corrupt))
        wait_for(lambda: uploaded() == corrupt.name, 30, "the upload")
        error = ask_and_wait("corrupt.mp4: not a readable video")
        assert error.startswith("Error: /") and "/corrupt.mp4: not a readable video (" in error, error
        assert not browser.find_elements(By.CSS_SELECTOR, "#frames img") and answer("a") == answer("b") == ""

        # a file over the upload limit (--max-upload-mb 5) is refused by the page, naming the limit
        browser.find_element(By.CSS_SELECTOR, "#video button[aria-label=Clear]").click()
        (tmp_path / "large.mp4").write_bytes(bytes(6 * 1024**2))
        browser.find_element(By.CSS_SELECTOR, "#video input[type=file]").send_keys(str(tmp_path / "large.mp4"))
        body = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
        wait_for(lambda: 'exceed the maximum allowed size of 5.0 Mb: "large.mp4"' in body(), 30, "the size error")
        assert uploaded() is None

        # a model folder that does not load: its error
        model_b = browser.find_element(By.CSS_SELECTOR, "#model-b input")
        model_b.click()
        model_b.send_keys(Keys.CONTROL, "a")
        model_b.send_keys(str(tmp_path / "no-model"), Keys.ENTER)
        error = ask_and_wait("no config.json")
        assert error.startswith(f"Error: {tmp_path / 'no-model'}: no config.json (expected a directory"), error

        # the server goes on: a sample clip (the picker fills in the video and its question), model B chosen again
        choose("#model-b", arms["staveq2"]["model"])
        browser.find_element(By.CSS_SELECTOR, "#sample input").click()
        options = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#sample [role=option]"), 10, "samples")
        assert len(options) == 4
        choose("#sample", options[0].get_attribute("aria-label"))
        wait_for(lambda: uploaded() == "00000.mp4", 30, "the sample clip in the upload box")
        assert "Which way" in browser.find_element(By.CSS_SELECTOR, "#question textarea").get_property("value")
        assert ask_and_wait("Done").startswith("Done in")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#frames img")) == 8
        assert answer("a") == stave_ask_of("a") and answer("b") == stave_ask_of("b")

        # choosing model A shows its sampling defaults: the STA model here has no training record
        choose("#model-a", arms["staveq2"]["model"])
        shown = lambda: browser.find_element(By.CSS_SELECTOR, "#sampling-defaults").text  # noqa: E731
        wait_for(lambda: "VideoOptions' defaults" in shown(), 10, "model A's defaults")
        assert browser.find_element(By.CSS_SELECTOR, "#mode input[value=fps]").is_selected()
        max_pixels = browser.find_element(By.CSS_SELECTOR, "#max-pixels input").get_property("value")
        assert max_pixels == str(VideoOptions().max_pixels)
        assert server.poll() is None
    finally:
        browser.quit()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        print((tmp_path / "server.log").read_text()[-3000:])
