"""Make ``docs/images/app.png``, the README's picture of ``maskgen app``: the page in headless
Chromium on the shipped reference model, after generating a class and inpainting a painted
stroke over an image of the embedded Fashion-MNIST subset. Needs Chromium, chromedriver
(``scripts/install-system.sh``) and selenium (``pip install -e '.[test]'``). Usage::

    python scripts/app_screenshot.py [--out docs/images/app.png]
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from maskgen.app import make_server
from maskgen.data import open_dataset
from maskgen.pipelines import MaskGen, reference_dir


def chromium(width: int, height: int):
    from selenium import webdriver

    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        sys.exit("app_screenshot: needs Chromium and chromedriver (scripts/install-system.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def wait_for_result(browser, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not browser.execute_script("return window.maskgen.result") and time.monotonic() < deadline:
        time.sleep(0.1)


def main() -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/images/app.png")
    args = p.parse_args()
    server = make_server(MaskGen.load(reference_dir()), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    browser = chromium(1100, 720)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            image, label = open_dataset("embedded", image_size=32)[0]
            Image.fromarray(image[0].numpy()).save(Path(tmp) / "upload.png")
            browser.get(server.url)
            while not browser.execute_script("return document.body.dataset.ready"):
                time.sleep(0.1)
            Select(browser.find_element(By.ID, "cls")).select_by_value("0")
            browser.find_element(By.ID, "cfg").clear()
            browser.find_element(By.ID, "cfg").send_keys("2")
            browser.find_element(By.ID, "generate").click()
            wait_for_result(browser)
            browser.find_element(By.ID, "file").send_keys(str(Path(tmp) / "upload.png"))
            time.sleep(0.5)
            canvas = browser.find_element(By.ID, "mask")
            # a stroke across the middle of the image, redrawn as the image's own class
            ActionChains(browser).move_to_element_with_offset(canvas, -90, 10).click_and_hold().move_by_offset(180, 0).release().perform()
            Select(browser.find_element(By.ID, "cls")).select_by_value(str(int(label)))
            browser.execute_script("window.maskgen.result = null")
            browser.find_element(By.ID, "inpaint").click()
            wait_for_result(browser)
            shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    finally:
        browser.quit()
        server.shutdown()
        server.server_close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a 64-colour palette keeps the PNG small enough to commit
    shot.quantize(64).save(out, optimize=True)
    print(f"screenshot {shot.width}x{shot.height} -> {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
