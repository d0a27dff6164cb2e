"""The demo page in a real browser: Debian's chromium, headless, driven by Selenium through the system's
chromedriver (nothing is downloaded). `make test-browser` installs what it needs; elsewhere it is skipped when
chromium, chromedriver or Selenium is missing. XMGIE_SCREENSHOT=<path> keeps the screenshot."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the demo extra")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser extra (make test-browser)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs chromium and chromedriver (apt)")


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def edit_until_done(browser, attempts: int = 4) -> None:
    """Click Edit until the edited image arrives. A click the server answers with "upload a photo" (the upload had
    not reached it yet: a race on a loaded machine) is repeated; any other message in the page fails the test."""
    import time

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def errors(d):
        # textContent: a toast fading in has no visible text yet
        return [e.get_attribute("textContent") for e in d.find_elements(By.CSS_SELECTOR, ".toast-body.error")]

    for _ in range(attempts):
        browser.find_element(By.CSS_SELECTOR, "#edit-button").click()
        WebDriverWait(browser, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#edit img") or errors(d))
        if browser.find_elements(By.CSS_SELECTOR, "#edit img"):
            return
        assert all("upload a photo" in e for e in errors(browser)), errors(browser)
        time.sleep(2)
    pytest.fail(f"no edit after {attempts} clicks: {errors(browser)}")


def test_upload_edit_and_screenshot(demo_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from xmgie.demo import examples

    url, _ = demo_server
    wait = WebDriverWait(browser, 120)
    browser.get(url)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#photo input[type=file]")))
    photo, prompt = examples()[0]
    browser.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(photo)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#photo canvas")))
    browser.find_element(By.CSS_SELECTOR, "#prompt textarea").send_keys(prompt)
    anywhere = [e for e in browser.find_elements(By.CSS_SELECTOR, "label") if e.text.strip() == "anywhere"]
    anywhere[0].click()
    edit_until_done(browser)
    wait.until(lambda d: "instruction read" in d.find_element(By.CSS_SELECTOR, "#status").text)
    shot = Path(os.environ.get("XMGIE_SCREENSHOT") or tmp_path / "demo.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shot))
    page = np.asarray(Image.open(shot).convert("RGB"))
    assert page.shape[0] > 500 and page.std() > 10  # a rendered page, not a blank one
    assert all("upload a photo" in e.get_attribute("textContent")
               for e in browser.find_elements(By.CSS_SELECTOR, ".toast-body.error"))
