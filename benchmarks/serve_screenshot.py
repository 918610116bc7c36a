"""Screenshots of the ``zoolens serve`` page for the README (``docs/serve.png``).

Indexes a zoo with the default encoder, keeps an ``accuracy`` head with the index, starts
the server, and drives Debian's chromium with Playwright: a fine-tuned model of the zoo is
uploaded (its neighbours, scores and predicted accuracy are captured), then the zoo map.

    python benchmarks/serve_screenshot.py [--zoo DIR] [--work DIR] [--out docs/serve.png]

Without ``--zoo`` the ``tiny`` zoo is generated into WORK first (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import threading
import time
import zipfile

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def build(zoo_dir: str, index_dir: str) -> str:
    """Index the zoo and fit its accuracy head; return a fine-tuned classifier left out of it
    (the head predicts test accuracy, which regressors lack)."""
    from zoolens.index import ModelIndex
    from zoolens.train.heads import fit_head
    from zoolens.zoo import Zoo

    zoo = Zoo.open(zoo_dir)
    if not ModelIndex.exists(index_dir):
        with ModelIndex.open(index_dir, encoder="default") as index:
            index.add_zoo(zoo_dir, progress=True)
            index.save_head(fit_head(zoo, "accuracy", index.encoder), name="accuracy")
    m = zoo.manifest
    children = m[(m["parent"].astype(str) != "") & m["accuracy"].notna()]  # a classifier
    child = str(children["id"].iloc[0])
    with ModelIndex.open(index_dir, encoder=None) as index:
        index.remove(child, missing_ok=True)  # the query: its parent should be found
    return child


def zip_model(model_dir: str, out: str) -> str:
    with zipfile.ZipFile(out, "w") as zf:
        for name in sorted(os.listdir(model_dir)):
            zf.write(os.path.join(model_dir, name), f"{os.path.basename(model_dir)}/{name}")
    return out


def serve(index_dir: str) -> tuple[str, object]:
    import uvicorn

    from zoolens.service import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(index_dir), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def shoot(url: str, upload: str, out: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        expect.set_options(timeout=300_000)
        page.goto(url + "/")
        page.fill("#k", "8")
        page.set_input_files("#file", upload)
        expect(page.locator("#results tbody tr.hit").first).to_be_visible()
        page.screenshot(path=out)
        page.click("#nav-map")
        # a UMAP layout is made after the first visit (202 until then): the page polls
        expect(page.locator("#map")).to_have_attribute("data-ready", "true", timeout=600_000)
        page.screenshot(path=out.replace(".png", "-map.png"))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", help="an existing zoo directory (default: generate tiny)")
    parser.add_argument("--work", default="serve-screenshot", help="zoo, index and upload")
    parser.add_argument("--out", default="docs/serve.png")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    zoo_dir = args.zoo
    if zoo_dir is None:
        from zoolens.zoo.generate import generate_zoo

        zoo_dir = os.path.join(args.work, "zoo")
        generate_zoo("tiny", zoo_dir)
    child = build(zoo_dir, os.path.join(args.work, "index"))
    upload = zip_model(os.path.join(zoo_dir, "models", child), os.path.join(args.work, "query.zip"))
    url, server = serve(os.path.join(args.work, "index"))
    try:
        shoot(url, upload, args.out)
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
    print(f"wrote {args.out} and {args.out.replace('.png', '-map.png')} (query: {child})")


if __name__ == "__main__":
    main()
