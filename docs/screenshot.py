"""Draw the README's picture of the web console: ``python docs/screenshot.py`` -> docs/console.png.

Fits MiniLM on 5 shots of 12 BANKING77 intents, serves the model on loopback, asks the console
about one sentence in headless chromium (Debian's ``chromium`` and ``chromium-driver``) and saves
the page, reduced to a 64-colour palette so the picture stays small.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import uvicorn
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from protoshot.data import load_source
from protoshot.model import FewShotModel
from protoshot.pipeline import embedder_for
from protoshot.service import create_app

QUESTION = "I ordered a new card two weeks ago and it still hasn't come"


def fit_demo_model(folder: Path, data_dir: str) -> Path:
    samples = load_source("banking77:train", root=data_dir)
    labels = np.asarray(samples.labels)
    intents = np.unique(labels)[::6][:12]
    rows = [i for c in intents for i in np.flatnonzero(labels == c)[:5]]
    model = FewShotModel(embedder_for("minilm"))
    model.fit([samples.items[i] for i in rows], labels[rows])
    model.calibrate_on_shots()
    return model.save(folder / "model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-o", "--output", type=Path, default=Path(__file__).with_name("console.png")
    )
    parser.add_argument(
        "--data-dir", default=os.environ.get("PROTOSHOT_DATA_DIR", "../shared/data")
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(fit_demo_model(Path(tmp), args.data_dir))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--window-size=1200,1000",
                     "--hide-scrollbars"):  # fmt: skip
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        try:
            while not server.started:
                time.sleep(0.05)
            driver.get(f"http://127.0.0.1:{sock.getsockname()[1]}/")
            wait = WebDriverWait(driver, 60)
            wait.until(lambda d: d.find_elements("css selector", "#classes tbody tr"))
            driver.find_element("id", "predict-text").send_keys(QUESTION)
            driver.find_element("id", "predict").click()
            wait.until(lambda d: d.find_elements("css selector", "#prediction .bar"))
            driver.save_screenshot(str(args.output))
        finally:
            driver.quit()
            server.should_exit = True
    Image.open(args.output).convert("RGB").quantize(64).save(args.output, optimize=True)
    print(f"{args.output}: {args.output.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
