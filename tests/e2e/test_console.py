"""The web console (`/ui` on the admin port) in a real browser: Debian's Chromium driven by Playwright.

One `duro serve` with the seed examples and duro's SDK test services
registered serves every test of the module; each test opens its own page and
fails if the page raised a JavaScript error. What the console does is checked
where it lands: the ingress's answers, the admin API, the side effects the
handlers record.

Screenshots of each page go to `docs/console/` when DURO_CONSOLE_SCREENSHOTS=1
(`DURO_CONSOLE_SCREENSHOTS=1 python -m pytest tests/e2e/test_console.py`);
otherwise nothing is written outside the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.browser import launch, missing_browser
from tests.processes import REPO_ROOT, DuroServer, ServiceEndpoint, http, wait_until

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))

if missing_browser() is None:
    from playwright.sync_api import Page, expect, sync_playwright

    expect.set_options(timeout=30_000)

SCREENSHOTS = os.environ.get("DURO_CONSOLE_SCREENSHOTS") == "1"
SCREENSHOT_DIR = REPO_ROOT / "docs" / "console"
WAIT_S = 60.0


class Stack:
    """duro, the examples and the SDK test services, registered."""

    def __init__(self, directory: Path) -> None:
        self.side_effects = directory / "side-effects.log"
        env = {"DURO_EXAMPLES_SIDE_EFFECT_LOG": str(self.side_effects)}
        self.duro = DuroServer(directory / "data", directory / "duro.log")
        self.examples = ServiceEndpoint("examples.app:app", directory / "examples.log", env)
        self.services = ServiceEndpoint("tests.services.duro_sdk_services:app", directory / "services.log", env)
        self.spare = ServiceEndpoint("tests.services.duro_sdk_services:app", directory / "spare.log", env)  # registered by a test

    def start(self) -> None:
        for process in (self.duro, self.examples, self.services, self.spare):
            process.start()
        self.duro.wait_ready()
        for endpoint in (self.examples, self.services, self.spare):
            endpoint.wait_ready()
        self.examples_deployment = self.duro.register(self.examples.uri)["id"]
        self.services_deployment = self.duro.register(self.services.uri)["id"]

    def stop(self) -> None:
        for process in (self.spare, self.services, self.examples, self.duro):
            process.stop()

    def query(self, sql: str) -> list[dict[str, Any]]:
        status, _, body = http("POST", f"{self.duro.admin}/query", {"query": sql}, {"accept": "application/json"})
        assert status == 200, body
        return json.loads(body)["rows"]

    def side_effect_lines(self, name: str) -> list[list[str]]:
        if not self.side_effects.exists():
            return []
        lines = [line.split("\t") for line in self.side_effects.read_text().splitlines()]
        return [fields[1:] for fields in lines if fields[0] == name]

    def status_of(self, invocation_id: str) -> str | None:
        rows = self.query(f"SELECT status FROM sys_invocation WHERE id = '{invocation_id}'")
        return rows[0]["status"] if rows else None

    def send(self, path: str, body: object) -> str:
        status, _, answer = self.duro.call(path + "/send", body)
        assert status == 202, answer
        return str(json.loads(answer)["invocationId"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(tmp_path_factory.mktemp("console"))
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with sync_playwright() as playwright:
        context = launch(playwright, tmp_path_factory.mktemp("chromium-profile"))
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    """A fresh tab; the test fails if the console raised a JavaScript error in it."""
    opened = browser.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        opened.close()
    assert not errors, f"the console raised JavaScript errors: {errors}"


def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"), full_page=True)


def confirm(page: Page, label: str) -> None:
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=label, exact=True).click()
    expect(page.locator("dialog[open]")).to_have_count(0)


def wait_for_status(stack: Stack, invocation_id: str, statuses: set[str]) -> str:
    return str(
        wait_until(
            lambda: stack.status_of(invocation_id) in statuses and stack.status_of(invocation_id), WAIT_S, f"{invocation_id} in {statuses}"
        )
    )


# ---------------------------------------------------------------- tests


def test_each_page_has_its_own_url_and_survives_a_reload(stack: Stack, page: Page) -> None:
    status, headers, _ = http("GET", f"{stack.duro.admin}/ui/invocations?status=running")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in headers["content-security-policy"]
    cart = stack.duro.call("/ShoppingCart/carol/add_item", {"product_id": "jam", "price": 2.5, "quantity": 2})
    assert cart[0] == 200, cart
    [row] = stack.query("SELECT id FROM sys_invocation WHERE target = 'ShoppingCart/carol/add_item'")
    admin = stack.duro.admin

    page.goto(f"{admin}/ui")
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("a.count[data-status=completed] .number")).not_to_have_text("0")
    expect(page.get_by_role("link", name="ShoppingCart", exact=True).first).to_be_visible()
    expect(page.get_by_role("cell", name=stack.examples.uri)).to_be_visible()
    for _ in range(3):  # work between the chart's metric samples, so its lines have points above zero
        for _ in range(10):
            assert stack.duro.call("/SdkTestCounter/chart/increment", 1)[0] == 200
        page.wait_for_timeout(2100)
    expect(page.locator("figure.chart path.series-a").first).to_have_attribute("d", re.compile(r"L"))
    screenshot(page, "overview")

    page.get_by_role("link", name="Invocations", exact=True).click()
    expect(page).to_have_url(f"{admin}/ui/invocations")
    page.locator("select[name=service]").select_option("ShoppingCart")
    page.locator("input[name=key]").fill("carol")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/ui/invocations\?service=ShoppingCart&key=carol$"))
    expect(page.locator("#invocations tbody tr")).to_have_count(1)
    page.reload()
    expect(page.locator("#invocations tbody tr")).to_have_count(1)
    expect(page.locator("select[name=service]")).to_have_value("ShoppingCart")
    screenshot(page, "invocations")

    page.get_by_role("link", name=row["id"]).click()
    expect(page).to_have_url(f"{admin}/ui/invocations/{row['id']}")
    expect(page.locator("h1")).to_contain_text(row["id"])
    expect(page.locator("#journal li")).not_to_have_count(0)
    page.reload()
    expect(page.locator("h1")).to_contain_text(row["id"])
    page.go_back()
    expect(page).to_have_url(re.compile(r"/ui/invocations\?service=ShoppingCart&key=carol$"))

    page.goto(f"{admin}/ui/services/ShoppingCart")
    expect(page.locator("h1")).to_contain_text("ShoppingCart")
    expect(page.locator("#keys").get_by_role("link", name="carol")).to_be_visible()
    screenshot(page, "service")
    page.locator("#keys").get_by_role("link", name="carol").click()
    expect(page).to_have_url(f"{admin}/ui/services/ShoppingCart/keys/carol")
    expect(page.locator("#state-table")).to_contain_text('"product_id": "jam"')
    page.reload()
    expect(page.locator("#state-table")).to_contain_text('"product_id": "jam"')
    screenshot(page, "key")

    page.goto(f"{admin}/ui/deployments")
    expect(page.locator("#deployments")).to_contain_text(stack.examples.uri)
    screenshot(page, "deployments")
    page.goto(f"{admin}/ui/deployments/{stack.examples_deployment}")
    expect(page.locator("h1")).to_contain_text(stack.examples_deployment)
    expect(page.get_by_role("cell", name="UserSignup", exact=True)).to_be_visible()
    screenshot(page, "deployment")

    page.goto(f"{admin}/ui/no/such/page")
    expect(page.locator("h1")).to_have_text("No such page")


def test_seed_workflow_page_shows_the_journal_and_the_awaited_promise_and_resolves_it(stack: Stack, page: Page) -> None:
    invocation_id = stack.send("/UserSignup/ada/run", {"name": "Ada", "email": "ada@example.com"})
    wait_until(
        lambda: stack.query(f"SELECT index FROM sys_journal WHERE id = '{invocation_id}' AND entry_type = 'Command: GetPromise'"),
        WAIT_S,
        "the signup workflow to await its promise",
    )
    [(email, secret)] = stack.side_effect_lines("send_verification_email")
    assert email == "ada@example.com"

    page.goto(f"{stack.duro.admin}/ui/invocations?service=UserSignup")
    page.get_by_role("link", name=invocation_id).click()
    expect(page).to_have_url(f"{stack.duro.admin}/ui/invocations/{invocation_id}")
    journal = page.locator("#journal")
    expect(journal.locator("li[data-type=Input]")).to_contain_text('"email": "ada@example.com"')
    expect(journal.locator("li[data-type=Run]").filter(has_text="create")).to_have_count(1)
    expect(journal.locator("li[data-type=Run]").filter(has_text="mail")).to_have_count(1)
    awaiting = journal.locator("li[data-type=GetPromise]")
    expect(awaiting).to_contain_text("email-link-clicked")
    expect(awaiting).to_contain_text("waiting")
    promise = page.locator("#promises tr[data-promise=email-link-clicked]")
    expect(promise).to_contain_text("pending")
    expect(promise).to_contain_text("awaited")
    screenshot(page, "invocation")

    promise.get_by_role("button", name="Resolve…").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("Resolve promise “email-link-clicked”?")
    dialog.locator("textarea[name=value]").fill(json.dumps(secret))
    confirm(page, "Resolve")
    expect(page.locator("#notice")).to_contain_text("Promise “email-link-clicked” resolved.")

    wait_for_status(stack, invocation_id, {"completed"})
    expect(page.locator("#output")).to_have_text("true")
    expect(page.locator("#status")).to_have_text("completed")
    expect(journal.locator("li[data-type=GetPromise]").filter(has_text="→")).to_have_count(1)  # the completion, with its value
    status, _, output = http("GET", f"{stack.duro.ingress}/restate/workflow/UserSignup/ada/output")
    assert status == 200 and json.loads(output) is True
    [row] = stack.query("SELECT completed, completion_success_value_utf8 FROM sys_promise WHERE service_key = 'ada'")
    assert row == {"completed": True, "completion_success_value_utf8": json.dumps(secret)}


def test_cancel_a_sleeping_invocation_from_the_filtered_list(stack: Stack, page: Page) -> None:
    sleepers = [stack.send("/SdkTestService/sleep_until_cancelled", tag) for tag in ("nap-1", "nap-2")]
    for invocation_id in sleepers:
        wait_until(
            lambda invocation_id=invocation_id: stack.query(
                f"SELECT index FROM sys_journal WHERE id = '{invocation_id}' AND entry_type = 'Command: Sleep'"
            ),
            WAIT_S,
            f"{invocation_id} to sleep",
        )
    other = stack.send("/ShoppingCart/dora/add_item", {"product_id": "tea", "price": 1, "quantity": 1})
    wait_for_status(stack, other, {"completed"})

    page.goto(f"{stack.duro.admin}/ui/invocations")
    page.locator("select[name=service]").select_option("SdkTestService")
    page.locator("select[name=handler]").select_option("sleep_until_cancelled")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#invocations tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#invocations")).not_to_contain_text("ShoppingCart")

    page.locator(f"#invocations input[data-id={sleepers[0]}]").check()
    page.locator("select[name=command]").select_option("cancel")
    page.locator("#apply-selected").click()
    expect(page.locator("dialog[open]")).to_contain_text("Cancel this invocation?")
    confirm(page, "Cancel invocation")
    expect(page.locator("#notice")).to_contain_text("Cancel:")

    wait_for_status(stack, sleepers[0], {"completed"})
    wait_until(lambda: ["nap-1", "409"] in stack.side_effect_lines("cancelled"), WAIT_S, "the handler's compensation")
    assert stack.side_effect_lines("cancelled") == [["nap-1", "409"]], "only the selected invocation is cancelled, once"
    assert stack.status_of(sleepers[1]) != "completed"
    [row] = stack.query(f"SELECT completion_failure FROM sys_invocation WHERE id = '{sleepers[0]}'")
    assert "409" in row["completion_failure"]
    row_of_cancelled = page.locator(f"#invocations tr[data-id={sleepers[0]}]")
    expect(row_of_cancelled).to_contain_text("completed")

    # the rest of what the filter matches, in one go
    page.locator("select[name=status]").select_option(stack.status_of(sleepers[1]) or "running")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    page.locator("select[name=command]").select_option("cancel")
    page.locator("#apply-all").click()
    expect(page.locator("dialog[open]")).to_contain_text("handler = sleep_until_cancelled")
    confirm(page, "Cancel invocation")
    wait_for_status(stack, sleepers[1], {"completed"})
    wait_until(lambda: len(stack.side_effect_lines("cancelled")) == 2, WAIT_S, "the second compensation")


def test_lifecycle_commands_from_an_invocations_page(stack: Stack, page: Page) -> None:
    sleeper = stack.send("/SdkTestService/sleep_then_answer", 3_600_000)
    wait_until(
        lambda: stack.query(f"SELECT index FROM sys_journal WHERE id = '{sleeper}' AND entry_type = 'Command: Sleep'"), WAIT_S, "the sleep"
    )
    page.goto(f"{stack.duro.admin}/ui/invocations/{sleeper}")
    expect(page.locator("#journal li[data-type=Sleep]")).to_contain_text("until")
    page.locator("button[data-command=pause]").click()
    confirm(page, "Pause invocation")
    wait_for_status(stack, sleeper, {"paused"})
    expect(page.locator("#status")).to_have_text("paused")
    page.locator("button[data-command=resume]").click()
    confirm(page, "Resume invocation")
    expect(page.locator("#notice")).to_contain_text("Resume: done.")
    wait_for_status(stack, sleeper, {"running", "suspended"})
    page.locator("button[data-command=kill]").click()
    expect(page.locator("dialog[open]")).to_contain_text("Ends it now without asking the handler")
    confirm(page, "Kill invocation")
    wait_for_status(stack, sleeper, {"completed"})
    expect(page.locator("#status")).to_have_text("completed")
    expect(page.get_by_text("Failed: ")).to_contain_text("killed")

    assert stack.duro.call("/ShoppingCart/gina/add_item", {"product_id": "tea", "price": 1, "quantity": 1})[0] == 200
    [row] = stack.query("SELECT id FROM sys_invocation WHERE target = 'ShoppingCart/gina/add_item'")
    page.goto(f"{stack.duro.admin}/ui/invocations/{row['id']}")
    page.locator("button[data-command=restart-as-new]").click()
    confirm(page, "Restart as new invocation")
    expect(page.locator("#notice")).to_contain_text("restarted as inv_")
    restarted = wait_until(
        lambda: stack.query(f"SELECT id, status FROM sys_invocation WHERE restarted_from = '{row['id']}'"), WAIT_S, "the restart"
    )
    wait_for_status(stack, restarted[0]["id"], {"completed"})
    assert json.loads(stack.duro.call("/ShoppingCart/gina/get_total")[2]) == 2.0, "the input ran a second time"
    page.locator("button[data-command=purge]").click()
    confirm(page, "Purge invocation")
    expect(page.locator("#notice")).to_contain_text("Purge: done.")
    expect(page.locator("main")).to_contain_text(f"No invocation {row['id']}")
    assert stack.status_of(row["id"]) is None


def test_edit_a_carts_state_and_read_it_back_through_the_ingress(stack: Stack, page: Page) -> None:
    status, _, body = stack.duro.call("/ShoppingCart/erin/add_item", {"product_id": "tea", "price": 3.5, "quantity": 2})
    assert status == 200, body
    assert json.loads(stack.duro.call("/ShoppingCart/erin/get_total")[2]) == 7.0

    page.goto(f"{stack.duro.admin}/ui/services/ShoppingCart/keys/erin")
    expect(page.locator("#state-table tr[data-name=cart]")).to_contain_text('"quantity": 2')
    page.locator("#edit-state").click()
    edited = {"items": [{"product_id": "tea", "price": 3.5, "quantity": 2}, {"product_id": "cake", "price": 4.25, "quantity": 3}]}
    page.locator("#state-editor textarea").fill(json.dumps(edited, indent=2))
    page.locator("#save-state").click()
    expect(page.locator("dialog[open]")).to_contain_text("change “cart”")
    confirm(page, "Replace state")
    expect(page.locator("#notice")).to_contain_text("State")
    expect(page.locator("#state-table tr[data-name=cart]")).to_contain_text('"product_id": "cake"')

    total = json.loads(stack.duro.call("/ShoppingCart/erin/get_total")[2])
    assert total == 3.5 * 2 + 4.25 * 3
    [row] = stack.query("SELECT value_utf8 FROM state WHERE service_name = 'ShoppingCart' AND service_key = 'erin' AND key = 'cart'")
    assert json.loads(row["value_utf8"]) == edited


def test_a_state_edit_from_a_stale_copy_is_refused_and_changes_nothing(stack: Stack, page: Page) -> None:
    assert stack.duro.call("/ShoppingCart/fred/add_item", {"product_id": "tea", "price": 1, "quantity": 1})[0] == 200
    page.goto(f"{stack.duro.admin}/ui/services/ShoppingCart/keys/fred")
    expect(page.locator("#state-table tr[data-name=cart]")).to_contain_text('"product_id": "tea"')
    page.locator("#edit-state").click()
    page.locator("#state-editor textarea").fill(json.dumps({"items": []}))
    # meanwhile another operator's (here: a client's) change lands
    assert stack.duro.call("/ShoppingCart/fred/add_item", {"product_id": "milk", "price": 2, "quantity": 1})[0] == 200
    page.locator("#save-state").click()
    confirm(page, "Replace state")
    expect(page.locator("#notice")).to_contain_text("Not saved: the state changed since it was loaded")
    assert json.loads(stack.duro.call("/ShoppingCart/fred/get_total")[2]) == 3.0, "both items are still there"


def test_the_pages_state_version_and_json_layout_agree_with_the_server(stack: Stack, page: Page) -> None:
    """The version the page computes is the one the API checks (Web Crypto, and the fallback for pages on plain http elsewhere)."""
    from protocol.state_version import state_version

    pairs = [(b"name", b"bob"), (b"cart", b'{"items":[]}'), (b"\xff\x00", bytes(range(200)))]
    expected = state_version(pairs)
    page.goto(f"{stack.duro.admin}/ui")
    stored_json = '{"price":1.0,"n":12345678901234567890,"s":"a, {b}: \\"c\\""}'
    answer = page.evaluate(
        """async ([pairs, storedJson]) => {
          const state = await import('/ui/assets/state.js');
          const format = await import('/ui/assets/format.js');
          const bytes = pairs.map(([k, v]) => [Uint8Array.from(k), Uint8Array.from(v)]);
          const input = state.versionInput(bytes);
          const viaFallback = state.sha256(input);
          const viaCrypto = new Uint8Array(await crypto.subtle.digest('SHA-256', input));
          return {
            version: await state.stateVersion(bytes),
            same: viaFallback.every((b, i) => b === viaCrypto[i]),
            layout: format.reindent(storedJson),
          };
        }""",
        [[[list(k), list(v)] for k, v in pairs], stored_json],
    )
    assert answer["version"] == expected
    assert answer["same"], "the fallback SHA-256 agrees with Web Crypto"
    assert answer["layout"] == '{\n  "price": 1.0,\n  "n": 12345678901234567890,\n  "s": "a, {b}: \\"c\\""\n}', (
        "whitespace moves, numbers and strings stay"
    )


def test_a_state_value_with_markup_renders_as_text(stack: Stack, page: Page) -> None:
    hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>'
    status, _, body = http(
        "POST",
        f"{stack.duro.admin}/services/ShoppingCart/state",
        {"object_key": "mallory", "new_state": {"note": list(hostile.encode()), "<i>name</i>": list(json.dumps(hostile).encode())}},
    )
    assert status in (200, 202), body
    wait_until(lambda: stack.query("SELECT key FROM state WHERE service_key = 'mallory'"), WAIT_S, "the state patch")

    page.goto(f"{stack.duro.admin}/ui/services/ShoppingCart/keys/mallory")
    note = page.locator("#state-table tr[data-name=note]")
    expect(note).to_contain_text("<script>window.__pwned = 1</script>")
    expect(note).to_contain_text('<img src=x onerror="window.__pwned = 2">')
    expect(page.locator("#state-table tr", has_text="<i>name</i>")).to_have_count(1)
    assert page.locator("#state script, #state img, #state b, #state i").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_a_deployment_replaced_by_a_newer_one_drains_and_is_removed_from_its_page(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.duro.admin}/ui/deployments")
    page.locator("#register input[name=uri]").fill(stack.spare.uri)
    page.locator("#register input[name=force]").check()
    page.get_by_role("button", name="Register").click()
    expect(page.locator("#notice")).to_contain_text("Registered")
    newer = page.locator("#notice a").inner_text()
    assert newer.startswith("dp_") and newer != stack.services_deployment
    assert json.loads(http("GET", f"{stack.duro.admin}/services/SdkTestService")[2])["deployment_id"] == newer

    old = stack.services_deployment
    old_row = page.locator("#deployments tr", has=page.get_by_role("link", name=old))
    expect(old_row).to_contain_text(re.compile("Draining|Drained"))
    page.get_by_role("link", name=old).click()
    expect(page).to_have_url(f"{stack.duro.admin}/ui/deployments/{old}")
    page.locator("#remove").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text(f"Remove deployment {old}?")
    if dialog.locator("input[name=force]").count():
        dialog.locator("input[name=force]").check()
    confirm(page, "Remove")
    expect(page.locator("#notice")).to_contain_text("removed")
    assert http("GET", f"{stack.duro.admin}/deployments/{old}")[0] == 404
    stack.services_deployment = newer
    assert json.loads(stack.duro.call("/SdkTestService/sleep_then_answer", 1)[2]) == "slept"
