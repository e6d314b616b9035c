"""Fuzzing the HTTP ingress with hypothesis: any path, method, headers and body get a deliberate answer, never a 500, and it keeps serving.

The ingress runs as its ASGI app over a `MemoryLog`, with `FakePartitions`
answering as partition leaders would (the same doubles as
`test_ingress_http.py`). Every request is checked for: no 500, an error body
that says what was wrong, and a node that still serves a plain call after
the whole run.
"""

from __future__ import annotations

import asyncio
import json
import string

import httpx
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ingress_fakes import FakePartitions, default_responder, make_registry

from ingress.http import build_ingress_app
from ingress.settings import IngressSettings
from wal.memory import MemoryLog
from wal.replies import ReplyBus

SEGMENT_CHARACTERS = string.ascii_letters + string.digits + "-_.~%!$&'()*+,;=:@ éß中🙂"
KNOWN_SEGMENTS = [
    "Greeter", "Counter", "Signup", "greet", "echo", "fail", "slow", "hidden", "needsbody", "add", "get", "run", "status",
    "restate", "send", "call", "attach", "output", "invocation", "workflow", "awakeables", "a", "health", "resolve", "reject",
    "openapi", "inv_1abc", "", "..", "%2F", "%",
]  # fmt: skip
segments = st.one_of(st.sampled_from(KNOWN_SEGMENTS), st.text(SEGMENT_CHARACTERS, max_size=12))
keys = st.one_of(st.sampled_from(["alice", "bob", "", "a%2Fb", "é"]), st.text(SEGMENT_CHARACTERS, max_size=8))
greeter_handlers = st.sampled_from(["greet", "echo", "noinput", "fail", "slow", "hidden", "needsbody", "nope"])
ids = st.one_of(st.just("inv_1" + "a" * 33), st.text(string.ascii_letters + string.digits + "_", max_size=40))
structured_paths = st.one_of(
    st.tuples(st.just("Greeter"), greeter_handlers).map(list),
    st.tuples(st.just("Greeter"), greeter_handlers, st.just("send")).map(list),
    st.tuples(st.just("Counter"), keys, st.sampled_from(["add", "get", "nope"])).map(list),
    st.tuples(st.just("Counter"), keys, st.sampled_from(["add", "get"]), st.just("send")).map(list),
    st.tuples(st.just("Signup"), keys, st.sampled_from(["run", "status"])).map(list),
    st.tuples(st.just("restate"), st.just("invocation"), ids, st.sampled_from(["attach", "output", "x"])).map(list),
    st.tuples(st.just("restate"), st.sampled_from(["attach", "output"]), ids).map(list),
    st.tuples(st.just("restate"), st.just("workflow"), st.just("Signup"), keys, st.sampled_from(["attach", "output"])).map(list),
    st.tuples(st.just("restate"), st.sampled_from(["awakeables", "a"]), ids, st.sampled_from(["resolve", "reject", "x"])).map(list),
    st.tuples(st.just("restate"), st.sampled_from(["call", "send"]), st.just("Greeter"), greeter_handlers).map(list),
    st.just(["restate", "health"]),
)
paths = st.one_of(structured_paths, st.lists(segments, min_size=0, max_size=8))
header_names = st.sampled_from(["content-type", "idempotency-key", "x-trace", "accept", "content-length", "x-restate-id", "host"])
header_values = st.text(string.printable.replace("\r", "").replace("\n", "").replace("\x0b", "").replace("\x0c", ""), max_size=40)
bodies = st.one_of(
    st.binary(max_size=400),
    st.integers().map(lambda n: str(n).encode()),
    st.builds(lambda value: json.dumps(value).encode(), st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)),
)  # fmt: skip


def test_any_request_gets_a_deliberate_answer_and_the_ingress_keeps_serving() -> None:
    loop = asyncio.new_event_loop()
    settings_ = IngressSettings(max_body_bytes=256, call_timeout_ms=200, submit_timeout_ms=200, reply_nudge_interval_ms=100)
    log = MemoryLog(4)
    bus = ReplyBus(node_id=1)
    registry = loop.run_until_complete(make_registry())
    fake = FakePartitions(log, bus, default_responder)
    loop.run_until_complete(fake.__aenter__())
    app = build_ingress_app(log, registry, bus, settings_)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingress", timeout=10)
    answered: dict[int, int] = {}

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        method=st.sampled_from(["POST"] * 6 + ["GET"] * 3 + ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
        path=paths,
        query=st.lists(st.tuples(st.sampled_from(["delay", "x", "delay"]), st.text(string.ascii_letters + string.digits + "ms.", max_size=6)), max_size=2),
        headers=st.dictionaries(header_names, header_values, max_size=4),
        body=bodies,
    )  # fmt: skip
    def request(method: str, path: list[str], query: list[tuple[str, str]], headers: dict[str, str], body: bytes) -> None:
        headers = {k: v for k, v in headers.items() if k not in ("content-length", "host")}
        try:
            url = httpx.URL("http://ingress/" + "/".join(path), params=query)
        except (httpx.InvalidURL, ValueError):
            assume(False)
            return
        try:
            response = loop.run_until_complete(client.request(method, url, headers=headers, content=body))
        except (httpx.InvalidURL, httpx.LocalProtocolError, UnicodeEncodeError):
            assume(False)  # the client refused to send it: nothing reached the ingress
            return
        answered[response.status_code] = answered.get(response.status_code, 0) + 1
        assert response.status_code != 500, f"{method} {url} {headers} -> 500: {response.text}"
        if response.status_code >= 400 and method != "HEAD" and response.content:
            message = response.json().get("message")
            assert isinstance(message, str) and message, f"{method} {url} -> {response.status_code} without a message: {response.text}"

    try:
        request()
        health = loop.run_until_complete(client.get("/restate/health"))
        call = loop.run_until_complete(client.post("/Greeter/greet", content=b'"ada"', headers={"content-type": "application/json"}))
        assert health.status_code == 200 and (call.status_code, call.content) == (200, b'"hello ada"')
        assert len(answered) >= 4, f"the requests reached several paths of the ingress: {answered}"
        print(f"\nstatus codes of the fuzzed requests: {dict(sorted(answered.items()))}")
    finally:
        loop.run_until_complete(client.aclose())
        loop.run_until_complete(fake.__aexit__())
        loop.close()
