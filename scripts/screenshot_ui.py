#!/usr/bin/env python
"""The README's screenshot (docs/ui.png): a running ``radmesh up`` asked its sample's question
in headless Chromium, the page captured once the key images are in.

    .venv/bin/radmesh up &                       # wait for "radmesh is up"
    .venv/bin/python scripts/screenshot_ui.py http://127.0.0.1:7860/ docs/ui.png

Prints how long the answer took and the reply. Exit 1 with one line if the page shows an error.
"""

from __future__ import annotations

import sys
import time

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--enable-unsafe-swiftshader", "--use-gl=angle",
                 "--use-angle=swiftshader"]


def main(url: str, out: str) -> int:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1500, "height": 1300}).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function("() => (document.querySelector('#radmesh-chat') || {innerText: ''})"
                               ".innerText.includes('Study loaded')", timeout=120_000)
        t0 = time.monotonic()
        page.click("#radmesh-ask")  # the sample's question is in the box
        page.wait_for_function("() => [...document.querySelectorAll('#radmesh-gallery img')]"
                               ".filter(i => i.complete && i.naturalWidth > 0).length >= 3", timeout=900_000)
        print(f"answered in {time.monotonic() - t0:.0f} s")
        time.sleep(3)  # the viewer loads the label map
        page.screenshot(path=out, full_page=True)
        print(page.inner_text("#radmesh-chat").strip().splitlines()[-1])
        browser.close()
    if errors:
        print(f"the page raised: {errors[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: screenshot_ui.py URL OUT.png", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
