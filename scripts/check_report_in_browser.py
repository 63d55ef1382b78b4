"""Render an HTML report in headless Chromium, screenshot it, and check what a reader would see.

    python3 scripts/check_report_in_browser.py report.html [--screenshot page.png]

Checks, each printed with its result (exit status 1 if any fails):

* every ``<img>`` decoded in the browser (``naturalWidth > 0``): no broken images;
* the page has at least one image and a title;
* the full-page screenshot is not blank (enough non-white pixels, more than a few colours).

Chromium reads an instrumented copy of the page in a temporary folder: a small script
appended to the copy records, after the load event, each image's decoded size and the page
height in the DOM, which ``--dump-dom`` prints. The original file is never modified.
Needs Debian's ``chromium`` (``apt-get install -y chromium``) and Pillow.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WIDTH = 1280
MAX_HEIGHT = 16000
PROBE = """
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images).map(img => ({
    alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight}));
  const probe = document.createElement("pre");
  probe.id = "render-probe";
  probe.textContent = JSON.stringify({images, height: document.documentElement.scrollHeight, title: document.title});
  document.body.appendChild(probe);
});
</script>
"""


def find_chromium() -> str | None:
    """The path of a Chromium binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _chromium(binary: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--disable-dev-shm-usage", "--mute-audio", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def probe_page(binary: str, page: Path, workdir: Path) -> dict:
    """Images' decoded sizes, page height and title, as the browser sees them after load."""
    copy = workdir / "probed.html"
    text = page.read_text(encoding="utf-8")
    copy.write_text(text.replace("</body>", PROBE + "</body>") if "</body>" in text else text + PROBE, encoding="utf-8")
    result = _chromium(binary, "--virtual-time-budget=10000", f"--window-size={WIDTH},1000", "--dump-dom", copy.as_uri())
    match = re.search(r'<pre id="render-probe">(.*?)</pre>', result.stdout, flags=re.S)
    if match is None:
        raise RuntimeError(f"Chromium printed no probe for {page} (exit {result.returncode}): {result.stderr[-2000:]}")
    import html

    return json.loads(html.unescape(match.group(1)))


def screenshot(binary: str, page: Path, target: Path, height: int) -> None:
    result = _chromium(binary, "--virtual-time-budget=10000", f"--window-size={WIDTH},{height}",
                       f"--screenshot={target}", page.resolve().as_uri())
    if not target.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {result.returncode}): {result.stderr[-2000:]}")


def blank_check(image_path: Path) -> tuple[float, int]:
    """(share of pixels that are not near-white, number of distinct colours)."""
    import numpy as np
    from PIL import Image

    with Image.open(image_path) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    ink = float((pixels.min(axis=1) < 235).mean()) if len(pixels) else 0.0
    colours = len(np.unique(pixels, axis=0))
    return ink, colours


def check(page: Path, shot: Path) -> list[tuple[str, bool, str]]:
    """Run every check; return (name, passed, detail) rows."""
    binary = find_chromium()
    if binary is None:
        raise RuntimeError("No chromium binary on PATH (Debian: apt-get install -y chromium).")
    results = []
    with tempfile.TemporaryDirectory(prefix="report-probe-") as workdir:
        probe = probe_page(binary, page, Path(workdir))
    images = probe["images"]
    broken = [image["alt"] or "(no alt text)" for image in images if not image["complete"] or image["width"] == 0]
    results.append(("images decoded", bool(images) and not broken,
                    f"{len(images)} image(s), broken: {broken}" if broken else f"{len(images)} image(s), all decoded"))
    results.append(("page title", bool(probe["title"].strip()), repr(probe["title"])))
    height = int(min(max(probe["height"], 600), MAX_HEIGHT))
    screenshot(binary, page, shot, height)
    ink, colours = blank_check(shot)
    results.append(("screenshot not blank", ink > 0.01 and colours > 16,
                    f"{shot} ({WIDTH}x{height}): {ink:.1%} non-white pixels, {colours} colours"))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="the HTML file to check")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="where to write the PNG (must not exist; default: a new temporary folder)")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        print(f"error: {args.page} is not a file", file=sys.stderr)
        return 2
    shot = args.screenshot
    if shot is None:
        shot = Path(tempfile.mkdtemp(prefix="report-shot-")) / f"{args.page.stem}.png"
    elif shot.exists() or shot.is_symlink():
        print(f"error: {shot} exists; give a new file name for the screenshot", file=sys.stderr)
        return 2
    try:
        results = check(args.page, shot)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, passed, detail in results:
        print(f"{'ok  ' if passed else 'FAIL'} {name}: {detail}")
    return 0 if all(passed for _, passed, _ in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
