"""What a first visit to the web chat downloads, and how long the page takes to be ready in Chromium.

Sizes: every file of the build, raw and gzip-compressed (CloudFront compresses), split into our code and
the two pinned libraries (the baseline a library-free page would not pay). Timing: Debian's Chromium
loads a build served from loopback (no network latency) until the sign-in form is usable, median of
several cold page loads, against a baseline page of one static HTML file served the same way.
Prints figures; never fails on time.
"""

from __future__ import annotations

import gzip
import http.server
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.build_frontend import build  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "7"))


def sizes(out: Path) -> None:
    built = build(out)
    ours = vendor = ours_gz = vendor_gz = 0
    for file in built.files:
        data = file.source.read_bytes()
        compressed = len(gzip.compress(data, 6))
        if "/vendor/" in file.path:
            vendor, vendor_gz = vendor + len(data), vendor_gz + compressed
        else:
            ours, ours_gz = ours + len(data), ours_gz + compressed
    print(f"files: {len(built.files)}")
    print(f"our code (html, css, js, svg): {ours / 1024:6.1f} KiB raw, {ours_gz / 1024:5.1f} KiB gzip")
    print(f"marked + DOMPurify:            {vendor / 1024:6.1f} KiB raw, {vendor_gz / 1024:5.1f} KiB gzip")
    total, total_gz = (ours + vendor) / 1024, (ours_gz + vendor_gz) / 1024
    print(f"first visit total:             {total:6.1f} KiB raw, {total_gz:5.1f} KiB gzip")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/config.json":
            body = (
                b'{"userPoolId":"p_x","userPoolClientId":"c","cognitoEndpoint":"http://127.0.0.1:9/",'
                b'"webSocketUrl":"ws://127.0.0.1:9","httpApiUrl":"http://127.0.0.1:9"}'
            )
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def timings(out: Path, baseline_dir: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("page load: skipped (no chromium on PATH; `make chromium`)")
        return
    from playwright.sync_api import sync_playwright

    (baseline_dir / "index.html").write_text("<!doctype html><title>x</title><form><input id=u></form>")
    app_server, app_url = serve(out)
    base_server, base_url = serve(baseline_dir)
    results: dict[str, list[float]] = {"web chat": [], "baseline": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        for _ in range(RUNS):
            for name, url, ready in (
                ("web chat", app_url, "#signin-username"),
                ("baseline", base_url, "#u"),
            ):
                context = browser.new_context()  # a cold cache every time
                page = context.new_page()
                start = time.perf_counter()
                page.goto(url)
                page.locator(ready).wait_for(state="visible")
                results[name].append((time.perf_counter() - start) * 1000)
                context.close()
        browser.close()
    app_server.shutdown()
    base_server.shutdown()
    app, base = statistics.median(results["web chat"]), statistics.median(results["baseline"])
    print(f"cold page load to a usable sign-in form (median of {RUNS}): {app:.0f} ms")
    print(f"baseline, one static HTML file: {base:.0f} ms  (ratio {app / base:.2f}x)")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out, baseline = Path(tmp) / "build", Path(tmp) / "baseline"
        baseline.mkdir()
        sizes(out)
        timings(out, baseline)


if __name__ == "__main__":
    main()
