"""The web console's server side (`ingress/console.py`) and static checks of its files.

The pages themselves are tested in a real browser by `tests/e2e/test_console.py`.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import httpx
import pytest

from ingress.admin import build_admin_app
from ingress.console import CONSOLE_DIR, load_console_files
from ingress.registry import Registry
from wal.memory import MemoryLog
from wal.replies import ReplyBus

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(CONSOLE_DIR.rglob("*.js"))


@pytest.fixture
async def admin() -> httpx.AsyncClient:
    app = build_admin_app(MemoryLog(1), Registry(), ReplyBus(node_id=1))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://admin")


@pytest.mark.parametrize("path", ["/ui", "/ui/", "/ui/invocations", "/ui/invocations/inv_1abc?x=1", "/ui/services/Cart/keys/a%2Fb"])
async def test_every_page_url_gets_the_shell_with_a_strict_policy(admin: httpx.AsyncClient, path: str) -> None:
    response = await admin.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/ui/assets/app.js">' in response.text
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_assets_are_served_with_their_type_and_revalidated_by_etag(admin: httpx.AsyncClient) -> None:
    script = await admin.get("/ui/assets/app.js")
    assert script.status_code == 200 and script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert script.headers["cache-control"] == "no-cache"
    assert script.content == (CONSOLE_DIR / "assets" / "app.js").read_bytes()
    again = await admin.get("/ui/assets/app.js", headers={"if-none-match": script.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    style = await admin.get("/ui/assets/console.css")
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    missing = await admin.get("/ui/assets/nope.js")
    assert missing.status_code == 404 and "/ui/assets/nope.js" in missing.text
    for outside in ("/ui/assets/../console.py", "/ui/assets/%2e%2e/console.py", "/ui/assets/..%2fconsole.py"):
        response = await admin.get(outside)
        assert "console_routes" not in response.text, "only the console's own files are served"


def test_every_module_the_console_imports_is_one_of_its_files() -> None:
    files = load_console_files()
    for script in SCRIPTS:
        for imported in re.findall(r"^import .* from '(\.{1,2}/[^']+)';$", script.read_text(), flags=re.MULTILINE):
            target = (script.parent / imported).resolve().relative_to(CONSOLE_DIR).as_posix()
            assert target in files, f"{script.name} imports {imported}, which the console does not serve"
    shell = (CONSOLE_DIR / "index.html").read_text()
    for referenced in re.findall(r'"/ui/(assets/[^"]+)"', shell):
        assert referenced in files, f"index.html loads /ui/{referenced}, which does not exist"


def test_no_script_turns_text_into_markup() -> None:
    """The console puts data on the page as text only (dom.js); nothing parses strings as HTML or code."""
    forbidden = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|createContextualFragment|srcdoc")
    for script in SCRIPTS:
        for number, line in enumerate(script.read_text().splitlines(), 1):
            if script.name == "dom.js" and "FORBIDDEN_PROPS" in line:
                continue  # the list that refuses them
            assert not forbidden.search(line), f"{script.relative_to(CONSOLE_DIR)}:{number}: {line.strip()}"


def test_the_package_ships_every_console_file() -> None:
    """pyproject's package-data globs cover every file of the console, so an installed duro serves all of it."""
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["ingress"]
    for path in CONSOLE_DIR.rglob("*"):
        if path.is_file():
            relative = path.relative_to(CONSOLE_DIR.parent).as_posix()
            assert any(fnmatch.fnmatchcase(relative, pattern) and relative.count("/") == pattern.count("/") for pattern in patterns), (
                relative
            )
