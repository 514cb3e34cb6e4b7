"""The local app (``maskgen app``): its HTTP API through urllib, then the page in a real
headless browser (Chromium + chromedriver through Selenium), both on the shipped reference
model. The browser test is skipped only when no browser or driver is installed
(``scripts/install-system.sh`` installs them)."""

from __future__ import annotations

import base64
import io
import json
import shutil
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

from maskgen.app import make_server
from maskgen.cli import main
from maskgen.pipelines import MaskGen, reference_dir

# the hatch a masked patch is drawn with, from its description: mid-grey 128 with a darker
# (96) diagonal line wherever (row + column) is a multiple of 4
HATCH = np.where((np.add.outer(np.arange(64), np.arange(64)) % 4) == 0, 96, 128)


@pytest.fixture(scope="module")
def app():
    server = make_server(MaskGen.load(reference_dir()), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def post(app, path: str, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(app.url + path, data=data), timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def events(app, job: str) -> list[tuple[str, dict]]:
    with urllib.request.urlopen(f"{app.url}api/jobs/{job}/events", timeout=120) as r:
        text = r.read().decode()
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def png_array(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    raw = base64.b64decode(url.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(raw)))


def hatched_patches(image: np.ndarray) -> set[tuple[int, int]]:
    """The (row, column) of every cell of the 8x8 token grid whose patch of ``image`` (32x32
    decoded image, or 64x64 RGB token picture) shows the hatch."""
    p = image.shape[0] // 8
    hatch = HATCH[: 8 * p, : 8 * p].reshape(8 * p, 8 * p, *[1] * (image.ndim - 2))
    same = (image == hatch).reshape(8, p, 8, p, -1).all(axis=(1, 3, 4))
    return {(r, c) for r, c in zip(*np.nonzero(same))}


def png_b64(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_api_streams_a_frame_per_step_and_the_library_image(app):
    status, info = post(app, "api/generate", {"class": 7, "sampler": "confidence", "steps": 5, "seed": 3, "cfg": 1.0})
    assert status == 200 and info["steps"] == 5
    got = events(app, info["job"])
    steps = [p for name, p in got if name == "step"]
    assert [p["i"] for p in steps] == list(range(5)) and got[-1][0] == "done"
    masked = [p["masked"] for p in steps]
    assert masked == sorted(masked, reverse=True) and masked[-1] == 0 and masked[0] > 0
    # the first frame: the still-masked tokens, and only they, are hatched in both pictures
    hatched = hatched_patches(png_array(steps[0]["image"]))
    assert len(hatched) == masked[0] and hatched_patches(png_array(steps[0]["tokens"])) == hatched
    assert png_array(steps[0]["tokens"]).shape == (64, 64, 3)
    final = png_array(got[-1][1]["image"])
    mg = MaskGen.load(reference_dir())
    expected, _ = mg.generate([7], mg.sampler(sampler="confidence", steps=5, cfg=1.0), seed=3, progress=False)
    assert final.shape == (32, 32) and (final == expected[0, 0].numpy()).all()
    with urllib.request.urlopen(app.url + got[-1][1]["gif"].lstrip("/"), timeout=60) as r:
        assert r.headers["Content-Type"] == "image/gif"
        assert Image.open(io.BytesIO(r.read())).n_frames == 5


def test_api_inpaints_only_inside_the_mask(app):
    image = (np.add.outer(np.arange(32), 3 * np.arange(32)) % 256).astype(np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[6:18, 10:26] = 255
    body = {"class": 2, "sampler": "halton", "steps": 4, "image": png_b64(image), "mask": "data:image/png;base64," + png_b64(mask)}
    status, info = post(app, "api/inpaint", body)
    assert status == 200
    got = events(app, info["job"])
    assert [name for name, _ in got] == ["step"] * 4 + ["done"]
    done = got[-1][1]
    out, used = png_array(done["image"]), png_array(done["mask"]) > 0
    assert (png_array(done["input"]) == image).all() and (used == (mask > 0)).all()
    assert (out[~used] == image[~used]).all()
    # tokens outside rows 1..4 and columns 2..6 (the patches the region touches) are given:
    # never masked, so never hatched, in any frame
    region = {(r, c) for r in range(1, 5) for c in range(2, 7)}
    first = hatched_patches(png_array(got[0][1]["image"]))
    assert got[0][1]["masked"] == len(first) > 0 and first <= region


def test_a_frame_per_step_even_when_every_token_is_revealed_early(app):
    from maskgen.app.jobs import Job

    # the loop reports only steps that had masked tokens left; a fill rule that reveals
    # everything at step 2 of 4 must still give the page and the GIF four frames
    def work(job: Job) -> dict:
        record, blank = job.on_step(app.mg), app.mg.denoiser().blank(1, app.mg.device)
        record(0, blank)
        record(1, blank.masked_fill(torch.ones_like(blank, dtype=torch.bool), 5))
        return {}

    job = Job(4)
    job.run(work)
    got = [(name, json.loads(data)) for name, data in job.events]
    assert [name for name, _ in got] == ["step"] * 4 + ["done"] and got[-1][1]["frames"] == 4
    assert [(p["i"], p["masked"], p["unchanged"]) for _, p in got[:4]] == [(0, 64, False), (1, 0, False), (2, 0, True), (3, 0, True)]
    assert got[3][1]["image"] == got[1][1]["image"]
    assert Image.open(io.BytesIO(job.gif())).n_frames == 4


@pytest.mark.parametrize(
    "body, message",
    [
        ({"class": 10}, "class 10 is out of range: this model has classes 0..9"),
        ({"class": 0, "sampler": "euler"}, "unknown sampler 'euler' for this model; choose from confidence, halton, flow, ancestral, critic"),
        ({"class": 0, "steps": 0}, "steps must be an integer >= 1, got 0"),
        ({"class": 0, "colour": 1}, "unknown field(s) colour"),
        ({"class": 0, "sampler": "halton", "choice_temperature": 3}, "the halton sampler takes no choice temperature on this model; leave it out"),
        ({"class": 0, "sampler": "critic", "temperature": 0.5}, "the critic sampler takes no temperature on this model; leave it out"),
        (b"{not json", "the request body is not JSON"),
    ],
)
def test_api_refuses_bad_generate_requests(app, body, message):
    status, reply = post(app, "api/generate", body)
    assert status == 400 and reply["error"].startswith(message)


def test_the_page_is_offered_the_settings_each_sampler_takes(app):
    from maskgen.app.inputs import ModelInfo

    with urllib.request.urlopen(app.url + "api/info", timeout=60) as r:
        info = json.loads(r.read())
    assert info["classes"][9] == "Ankle boot" and (info["channels"], info["height"], info["width"]) == (1, 32, 32)
    fields = info["fields"]
    assert fields["confidence"] == ["choice_temperature", "temperature", "cfg", "self_guidance"]
    assert fields["halton"] == fields["flow"] == fields["ancestral"] == ["temperature", "cfg", "self_guidance"]
    assert fields["critic"] == ["cfg", "self_guidance"]  # Token-Critic sets the token temperature itself
    # eMIGM's continuous tokens: no confidence rule, critic or self-guidance module, no token temperature
    emigm = ModelInfo.of(MaskGen.load(reference_dir() / "emigm"))
    assert emigm.samplers == {"halton": ["cfg"], "flow": ["cfg"], "ancestral": ["cfg"], "preset:emigm": ["cfg"], "preset:mar": ["cfg"]}
    # the discrete model is offered the discrete presets (mar and emigm set a diffusion head)
    assert [k for k in fields if k.startswith("preset:")] == ["preset:di", "preset:halton", "preset:maskgit", "preset:valeoai-v1"]


def test_api_refuses_an_upload_that_is_no_image(app):
    mask = png_b64(np.full((32, 32), 255, np.uint8))
    text = base64.b64encode(b"%PDF-1.4 not an image").decode()
    status, reply = post(app, "api/inpaint", {"class": 0, "image": text, "mask": mask})
    assert status == 400 and reply["error"] == "the image is not an image file Pillow can read (PNG, JPEG, GIF, BMP, WebP)"
    status, reply = post(app, "api/inpaint", {"class": 0, "image": mask, "mask": png_b64(np.zeros((32, 32), np.uint8))})
    assert status == 400 and reply["error"].startswith("the mask is empty")


def test_cli_refuses_a_bad_port(capsys):
    assert main(["app", "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip() == "maskgen: error: --port must be in 0..65535, got 70000"


# -- the page in a real browser -------------------------------------------------------------
def _browser(download_dir):
    """A headless Chromium driven through chromedriver, or a skip saying what is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"))), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip(f"no {'Chromium' if binary is None else 'chromedriver'} found (scripts/install-system.sh installs both)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,1000"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir), "download.prompt_for_download": False})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def _wait(browser, script: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = browser.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {script!r}; page error: {browser.execute_script('return window.maskgen && window.maskgen.error')}")


def test_browser_generates_downloads_the_gif_and_inpaints(app, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser = _browser(tmp_path)
    try:
        browser.get(app.url)
        _wait(browser, "return document.body.dataset.ready")
        assert [o.text for o in Select(browser.find_element(By.ID, "sampler")).options] == ["confidence", "halton", "flow", "ancestral", "critic", "one-step", "preset:di", "preset:halton", "preset:maskgit", "preset:valeoai-v1"]
        Select(browser.find_element(By.ID, "sampler")).select_by_value("critic")
        hidden = browser.execute_script("return ['choice_temperature', 'temperature', 'cfg'].map(n => document.getElementById(n + '-label').hidden)")
        assert hidden == [True, True, False]
        Select(browser.find_element(By.ID, "sampler")).select_by_value("confidence")
        Select(browser.find_element(By.ID, "cls")).select_by_value("8")
        steps = browser.find_element(By.ID, "steps")

        # a bad value is refused by the server and shown in the page
        steps.clear()
        steps.send_keys("0")
        browser.find_element(By.ID, "generate").click()
        _wait(browser, "return window.maskgen.error")
        assert browser.find_element(By.ID, "error").text == "steps must be an integer >= 1, got 0"

        steps.clear()
        steps.send_keys("6")
        browser.find_element(By.ID, "generate").click()
        result = _wait(browser, "return window.maskgen.result")
        assert browser.find_element(By.ID, "error").text == ""
        assert len(browser.find_elements(By.CSS_SELECTOR, "#frames img")) == 6
        assert png_array(browser.find_element(By.ID, "final").get_attribute("src")).shape == (32, 32)
        assert result["settings"]["sampler"]["steps"] == 6 and result["settings"]["seed"] == 0

        browser.find_element(By.ID, "gif").click()
        deadline = time.monotonic() + 30
        while not [p for p in tmp_path.glob("*.gif")] and time.monotonic() < deadline:
            time.sleep(0.1)
        gifs = list(tmp_path.glob("*.gif"))
        assert len(gifs) == 1 and Image.open(gifs[0]).n_frames == 6

        # upload an image, paint a stroke over its upper left, inpaint
        image = (np.add.outer(5 * np.arange(32), np.arange(32)) % 256).astype(np.uint8)
        Image.fromarray(image).save(tmp_path / "upload.png")
        browser.find_element(By.ID, "file").send_keys(str(tmp_path / "upload.png"))
        _wait(browser, "return document.getElementById('photo').getContext('2d').getImageData(128, 128, 1, 1).data[3] > 0")
        canvas = browser.find_element(By.ID, "mask")
        # offsets from the canvas centre (256x256 on the page): a stroke from (48, 48) to (96, 80), brush 24
        ActionChains(browser).move_to_element_with_offset(canvas, -80, -80).click_and_hold().move_by_offset(24, 16).move_by_offset(24, 16).release().perform()
        browser.execute_script("window.maskgen.result = null")
        browser.find_element(By.ID, "inpaint").click()
        done = _wait(browser, "return window.maskgen.result")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#frames img")) == 6
        out, used = png_array(done["image"]), png_array(done["mask"]) > 0
        assert (png_array(done["input"]) == image).all()
        # the stroke covers page pixels 36..108 across and 36..92 down: model pixels 4..13 and 4..11
        rows, cols = np.nonzero(used)
        assert used.any() and rows.min() >= 4 and rows.max() <= 11 and cols.min() >= 4 and cols.max() <= 13
        assert (out[~used] == image[~used]).all()
    finally:
        browser.quit()
