"""The `/metrics` of a node of several workers: every worker's series in one Prometheus text, each sample labelled `worker`.

Each worker process has its own counters; the worker that answers `/metrics`
asks the others over their links and merges the texts family by family (the
format wants a family's samples together), adding `worker="i"` to every
sample, so that `sum by (...)` over `worker` gives the node's figure. A worker
that does not answer is left out (its series are missing from that scrape). A
node of one worker answers exactly as before, without the label.
"""

from __future__ import annotations

WORKER_LABEL = "worker"


def labelled_samples(line: str, worker: int) -> str:
    """A sample line with `worker="<worker>"` added to its labels."""
    name_end = min((index for index in (line.find("{"), line.find(" ")) if index >= 0), default=len(line))
    if name_end < len(line) and line[name_end] == "{":
        closing = line[name_end + 1 :].lstrip()
        separator = "" if closing.startswith("}") else ","
        return f'{line[: name_end + 1]}{WORKER_LABEL}="{worker}"{separator}{line[name_end + 1 :]}'
    return f'{line[:name_end]}{{{WORKER_LABEL}="{worker}"}}{line[name_end:]}'


def _families(text: str) -> list[tuple[str, list[str], list[str]]]:
    """(family name, its # lines, its sample lines), in the text's order."""
    families: list[tuple[str, list[str], list[str]]] = []
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            name = line.split(" ", 3)[2]
            if not families or families[-1][0] != name:
                families.append((name, [], []))
            families[-1][1].append(line)
        elif line.startswith("#"):
            continue
        elif families:
            families[-1][2].append(line)
    return families


def merge_worker_metrics(texts: dict[int, str]) -> str:
    """The Prometheus texts of several workers (worker index -> text) as one, every sample labelled with its worker."""
    order: list[str] = []
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for worker in sorted(texts):
        for name, comments, lines in _families(texts[worker]):
            if name not in headers:
                order.append(name)
                headers[name] = comments
                samples[name] = []
            samples[name].extend(labelled_samples(line, worker) for line in lines)
    out: list[str] = []
    for name in order:
        out.extend(headers[name])
        out.extend(samples[name])
    return "\n".join(out) + "\n"
