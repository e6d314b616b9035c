"""How fast the web console's pages paint: first contentful paint and the time until the page shows its data.

Run: `python -m benchmarks.console_first_paint [--loads 10]`. Starts `duro
serve` and the seed examples on free ports, registers them, makes a few
invocations (a cart, a waiting signup workflow), then opens each console page
`--loads` times in Debian's Chromium (`benchmarks.browser`) over loopback:
every load is a fresh tab on a profile whose cache was warmed once (`cold`
is the very first load, on an empty profile). For each page it prints the
median and the maximum of the browser's first contentful paint and of the
`duro:page-rendered` mark the console sets once the page shows the API's data.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.browser import launch, missing_browser
from benchmarks.runtimes import REPO_ROOT, DuroRuntime, free_port, http_json, wait_for

LOAD_TIMEOUT_S = 30.0
TIMINGS_JS = """() => {
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  const rendered = performance.getEntriesByName('duro:page-rendered')[0];
  return { fcp: paint ? paint.startTime : null, rendered: rendered ? rendered.startTime : null };
}"""


def _pages(admin: str, invocation_id: str) -> dict[str, str]:
    return {
        "overview": f"{admin}/ui",
        "invocations": f"{admin}/ui/invocations",
        "invocation": f"{admin}/ui/invocations/{invocation_id}",
        "key": f"{admin}/ui/services/ShoppingCart/keys/ada",
        "deployments": f"{admin}/ui/deployments",
    }


def _load(context: Any, url: str) -> dict[str, float]:
    page = context.new_page()
    try:
        page.goto(url)
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while True:  # polled with evaluate: the console's CSP refuses the string evaluation wait_for_function uses
            timings: dict[str, float] = page.evaluate(TIMINGS_JS)
            if timings["fcp"] is not None and timings["rendered"] is not None:
                return timings
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not paint and render within {LOAD_TIMEOUT_S} s: {timings}")
            page.wait_for_timeout(20)
    finally:
        page.close()


def measure(loads: int, run_dir: Path) -> dict[str, dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    duro = DuroRuntime(run_dir / "duro", partitions=4)
    examples_port = free_port()
    examples_log = open(run_dir / "examples.log", "ab")  # noqa: SIM115 - closed in finally
    examples = subprocess.Popen(
        [sys.executable, "-m", "examples.app", "--port", str(examples_port)], cwd=REPO_ROOT, stdout=examples_log, stderr=subprocess.STDOUT
    )
    try:
        duro.start()
        wait_for(lambda: http_json("GET", f"http://127.0.0.1:{examples_port}/health", timeout_s=2)[0] == 200, 30, "the examples")
        status, _ = http_json("POST", f"{duro.admin_url}/deployments", {"uri": f"http://127.0.0.1:{examples_port}"})
        assert status in (200, 201), f"registering the examples answered {status}"
        http_json("POST", f"{duro.ingress_url}/ShoppingCart/ada/add_item", {"product_id": "tea", "price": 3.5, "quantity": 2})
        status, sent = http_json("POST", f"{duro.ingress_url}/UserSignup/ada/run/send", {"name": "Ada", "email": "ada@example.com"})
        assert status == 202, sent
        pages = _pages(duro.admin_url, sent["invocationId"])
        results: dict[str, dict[str, Any]] = {}
        with sync_playwright() as playwright:
            context = launch(playwright, Path(tempfile.mkdtemp(dir=run_dir)))
            try:
                cold = _load(context, pages["overview"])
                for name, url in pages.items():
                    samples = [_load(context, url) for _ in range(loads)]
                    results[name] = {
                        "fcp_ms": [s["fcp"] for s in samples],
                        "rendered_ms": [s["rendered"] for s in samples],
                    }
                results["overview (cold profile)"] = {"fcp_ms": [cold["fcp"]], "rendered_ms": [cold["rendered"]]}
            finally:
                context.close()
        return results
    finally:
        duro.stop()
        examples.terminate()
        examples.wait(timeout=10)
        examples_log.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--loads", type=int, default=10, help="loads of each page (default 10)")
    parser.add_argument("--json", action="store_true", help="print the raw samples as JSON")
    args = parser.parse_args(argv)
    reason = missing_browser()
    if reason is not None:
        raise SystemExit(f"cannot measure: {reason}")
    with tempfile.TemporaryDirectory(prefix="duro-console-paint-") as directory:
        results = measure(args.loads, Path(directory))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print("| page | loads | first contentful paint, median / max (ms) | data shown, median / max (ms) |")
    print("|---|---|---|---|")
    for name, result in results.items():
        fcp, rendered = result["fcp_ms"], result["rendered_ms"]
        print(
            f"| {name} | {len(fcp)} | {statistics.median(fcp):.0f} / {max(fcp):.0f} | {statistics.median(rendered):.0f} / {max(rendered):.0f} |"
        )


if __name__ == "__main__":
    main()
