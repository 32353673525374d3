"""The web console at ``/``, driven in a real headless browser (Debian's chromium through
Selenium) against a real server on loopback: list, add a class, add a shot, predict, remove."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium.webdriver.common.keys import Keys

from tests._embed_fixtures import save_image_model
from tests.test_service import counts, serving
from tests.test_service_operations import folder  # noqa: F401  (the text model fixture)

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT = 60  # seconds: the first answers embed with the real model on a busy 2-core machine


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium, or a skip that says why and how to get it."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(
            "no chromium and chromedriver on this machine, so the console's browser test cannot "
            "run: `apt-get install chromium chromium-driver` (make test does so when it runs as "
            "root with apt-get)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


class Page:
    """The console in the browser, in the words of its user."""

    def __init__(self, driver: Any, url: str, *, loads: bool = True) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.wait = WebDriverWait(driver, WAIT)
        driver.get(url + "/")
        if loads:
            self.until(lambda: "classes" in self.text("model-info"))

    def until(self, condition: Callable[[], Any]) -> Any:
        return self.wait.until(lambda _: condition())

    def find(self, element_id: str) -> Any:
        return self.driver.find_element("id", element_id)

    def text(self, element_id: str) -> str:
        return str(self.find(element_id).text)

    def type(self, element_id: str, text: str) -> None:
        box = self.find(element_id)
        box.clear()
        box.send_keys(text)

    def rows(self) -> dict[str, int]:
        """The class table as shown (read in one script: the page may be re-rendering)."""
        rows = self.driver.execute_script(
            "return [...document.querySelectorAll('#classes tbody tr')]"
            ".map(r => [r.dataset.name, Number(r.querySelector('.shots').textContent)])"
        )
        return dict(rows)

    def add(self, name: str, examples: list[str]) -> str:
        self.driver.execute_script("document.getElementById('status').textContent = ''")
        self.type("add-class", name)
        self.type("add-text", "\n".join(examples))
        self.find("add").click()
        return str(self.until(lambda: self.text("status")))

    def predict(self, text: str, top_k: int = 3) -> list[str]:
        self.driver.execute_script("document.getElementById('prediction').replaceChildren()")
        self.type("predict-text", text)
        self.type("top-k", str(top_k))
        self.find("predict").click()
        return self.answer()

    def answer(self) -> list[str]:
        self.until(lambda: self.driver.find_elements("css selector", "#prediction .answer"))
        bars = self.driver.find_elements("css selector", "#prediction .bar .label")
        return [self.text_of("#prediction .answer"), *(b.text for b in bars)]

    def text_of(self, selector: str) -> str:
        return str(self.driver.find_element("css selector", selector).text)

    def remove(self, name: str) -> None:
        from selenium.webdriver.common.action_chains import ActionChains

        button = self.driver.find_element("css selector", f'tr[data-name="{name}"] button.remove')
        ActionChains(self.driver).double_click(button).perform()  # one gesture only arms it
        assert button.text == "Confirm"
        time.sleep(0.6)  # past the double-click: a deliberate second click confirms
        assert name in self.rows()
        button.click()
        self.until(lambda: name not in self.rows())


@pytest.fixture
def writable(folder: Path, tmp_path: Path) -> Path:  # noqa: F811
    return Path(shutil.copytree(folder, tmp_path / "m"))


def test_add_a_class_add_a_shot_predict_and_remove(
    browser: Any, writable: Path, cache_dir: Path
) -> None:
    with serving(writable, cache_dir) as url:
        page = Page(browser, url)
        before = page.rows()
        assert before == counts(url) and set(before.values()) == {3}
        assert "minilm (text)" in page.text("model-info")

        crypto = ["I want to buy bitcoin", "can I hold ethereum in my account"]
        assert "'crypto' now has 2 shots (4 classes); saved" in page.add("crypto", crypto)
        page.until(lambda: page.rows().get("crypto") == 2)
        existing = sorted(before)[0]
        page.add(existing, ["one more example of this class"])
        page.until(lambda: page.rows().get(existing) == 4)
        assert counts(url) == page.rows()  # what the page shows is what the server holds

        top = page.predict("how do I sell my bitcoin?", top_k=3)
        assert top[0] == "crypto" and top[1] == "crypto" and len(top) == 4
        assert "never rejects" in page.text("prediction")

        page.remove("crypto")
        assert "removed 'crypto': 3 classes remain" in page.text("status")
        assert "crypto" not in counts(url)


def test_names_are_shown_as_text_never_as_markup(
    browser: Any, writable: Path, cache_dir: Path
) -> None:
    name = '<img src=x onerror="document.title=1">'
    with serving(writable, cache_dir) as url:
        page = Page(browser, url)
        page.add(name, ["a markup name"])
        page.until(lambda: name in page.rows())
        assert page.text_of(f"#classes tr[data-name='{name}'] .name") == name
        assert browser.title == "protoshot console"  # the handler never ran
        assert not browser.find_elements("css selector", "#classes img")


def test_the_key_is_asked_for_and_used(browser: Any, writable: Path, cache_dir: Path) -> None:
    with serving(writable, cache_dir, api_keys=["s3cret"]) as url:
        page = Page(browser, url)
        status = page.add("crypto", ["buy bitcoin"])
        assert status.startswith("401: an API key is needed") and "enter the API key" in status
        page.type("api-key", "s3cret")
        assert "'crypto' now has 1 shots" in page.add("crypto", ["buy bitcoin"])
        assert counts(url)["crypto"] == 1
        browser.execute_script("sessionStorage.clear()")
    with serving(writable, cache_dir, api_keys=["s3cret"], protect_all=True) as url:
        assert httpx.get(url + "/").status_code == 200  # the page loads; its data needs the key
        page = Page(browser, url, loads=False)
        page.until(lambda: "401" in page.text("status"))
        page.type("api-key", "s3cret")
        page.find("api-key").send_keys(Keys.TAB)  # a changed key reloads the model
        page.until(lambda: page.rows() == counts_with(url, "s3cret"))


def counts_with(url: str, key: str) -> dict[Any, int]:
    classes = httpx.get(url + "/v1/classes", headers={"X-API-Key": key}).json()["classes"]
    return {c["name"]: c["shots"] for c in classes}


def test_a_read_only_server_offers_no_updates(
    browser: Any, writable: Path, cache_dir: Path
) -> None:
    with serving(writable, cache_dir, read_only=True) as url:
        page = Page(browser, url)
        assert "read-only" in page.text("model-info")
        assert not page.find("add-section").is_displayed()
        assert not browser.find_elements("css selector", "button.remove")


def test_an_image_is_chosen_and_classified(browser: Any, cache_dir: Path, tmp_path: Path) -> None:
    model_dir, files = save_image_model(tmp_path, cache_dir)
    with serving(model_dir, cache_dir) as url:
        page = Page(browser, url)
        assert not page.find("predict-text").is_displayed() and page.find("drop").is_displayed()
        assert not page.find("preview").is_displayed()
        browser.execute_script("document.getElementById('predict-file').style.display='block'")
        page.find("predict-file").send_keys(str(files[0]))  # submits on choice
        top = page.answer()
        expected = httpx.post(
            url + "/v1/predict", files=[("file", files[0].read_bytes())], data={"top_k": "5"}
        ).json()["predictions"][0]
        assert top == [expected["label"], *(t["label"] for t in expected["top_k"])]
        assert page.find("preview").is_displayed()


def test_the_console_cannot_be_framed_by_another_site(writable: Path, cache_dir: Path) -> None:
    with serving(writable, cache_dir, read_only=True) as url:
        for path in ("/", "/console/console.js"):
            headers = httpx.get(url + path).headers
            assert headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
