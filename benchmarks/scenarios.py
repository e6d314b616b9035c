"""The benchmark scenarios: which requests each one sends, with keys made fresh per run by a run tag.

Names: `greet`, `counter-1000-keys`, `counter-hot-key`, `workflow-3-steps`,
`steps-N` (N sequential `ctx.run` steps; `steps` alone expands to the
`--steps` list), `send` (one-way calls, then a wait until all ran), `memory`
(the runtime's RSS after a fixed number of completed calls).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Literal

from benchmarks.loadgen import JSON_HEADERS, Request, RequestFactory

COUNTER_KEYS = 1000
SEND_KEYS = 100
DEFAULT_STEPS = (1, 10, 50, 100)
BASE_SCENARIOS = ("greet", "counter-1000-keys", "counter-hot-key", "workflow-3-steps", "steps", "send", "memory")

ScenarioKind = Literal["load", "send", "memory"]


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: ScenarioKind = "load"
    steps: int | None = None

    def factory(self, run_tag: str) -> RequestFactory:
        """Request number -> request; `run_tag` keeps keys of different runs apart."""
        name = self.name
        if name in ("greet", "memory"):
            body = _json("bench")
            return lambda sequence: Request("/Greeter/greet", body, JSON_HEADERS)
        if name == "counter-1000-keys":
            chooser = random.Random(run_tag)
            return lambda sequence: Request(f"/Counter/{run_tag}-k{chooser.randrange(COUNTER_KEYS)}/add", b"1", JSON_HEADERS)
        if name == "counter-hot-key":
            return lambda sequence: Request(f"/Counter/{run_tag}-hot/add", b"1", JSON_HEADERS)
        if name == "workflow-3-steps":
            body = _json("bench")
            return lambda sequence: Request(f"/ThreeSteps/{run_tag}-w{sequence}/run", body, JSON_HEADERS)
        if name == "send":
            return lambda sequence: Request(
                send_key_path(run_tag, sequence % SEND_KEYS) + "/add/send", b"1", JSON_HEADERS, expected_status=202
            )
        assert self.steps is not None, f"scenario {name} has no request factory"
        body = _json(self.steps)
        return lambda sequence: Request("/Steps/steps", body, JSON_HEADERS)


def send_key_path(run_tag: str, key_index: int) -> str:
    return f"/Counter/{run_tag}-s{key_index}"


def parse_scenarios(names: str, steps: tuple[int, ...] = DEFAULT_STEPS) -> list[Scenario]:
    """Comma-separated names ('all' for every scenario) -> scenarios, `steps` expanded to steps-N."""
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    if wanted == ["all"]:
        wanted = list(BASE_SCENARIOS)
    scenarios: list[Scenario] = []
    for name in wanted:
        scenarios.extend(_scenarios_named(name, steps))
    if not scenarios:
        raise ValueError(f"no scenario in {names!r}; expected names from {', '.join(BASE_SCENARIOS)}, steps-N or all")
    return scenarios


def _scenarios_named(name: str, steps: tuple[int, ...]) -> list[Scenario]:
    if name == "steps":
        return [Scenario(f"steps-{count}", steps=count) for count in steps]
    if name.startswith("steps-"):
        count = name.removeprefix("steps-")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"scenario {name!r}: expected steps-N with N a positive integer")
        return [Scenario(name, steps=int(count))]
    if name == "send":
        return [Scenario(name, kind="send")]
    if name == "memory":
        return [Scenario(name, kind="memory")]
    if name in BASE_SCENARIOS:
        return [Scenario(name)]
    raise ValueError(f"unknown scenario {name!r}; expected one of {', '.join(BASE_SCENARIOS)}, steps-N or all")
