"""Debian's Chromium under Playwright, as the console's browser tests and its first-paint benchmark launch it.

Playwright's own browser download does not work here, so the system Chromium
(`scripts/setup.d/80-chromium.sh` installs it) runs headless with a fresh
profile directory and without anything that reaches out to the network by
itself (background networking, component updates, sync, QUIC).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT: Final = {"width": 1280, "height": 900}


def missing_browser() -> str | None:
    """Why the browser cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (scripts/setup.d/80-chromium.sh installs it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install -e '.[test]')"
    return None


def launch(playwright: Any, profile_dir: Path) -> Any:
    """A Chromium browser context on a fresh profile (`--user-data-dir` = `profile_dir`); close it when done."""
    return playwright.chromium.launch_persistent_context(
        str(profile_dir), executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS), viewport=VIEWPORT
    )
