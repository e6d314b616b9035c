"""The reply bus's request ids in a node of several workers: each names its worker and fits the records that carry it."""

from __future__ import annotations

import pytest

from wal import replies
from wal.records import Envelope, IngressSink, Invoke, Record, ServiceType, Target, decode_record, encode_record
from wal.replies import ReplyBus

GREETER = Target("Greeter", "greet", None, ServiceType.SERVICE, None)


@pytest.mark.parametrize("workers", [1, 2, 5, 8, 256])
async def test_request_ids_name_their_worker_and_fit_a_record_even_from_the_highest_random_start(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replies.secrets, "randbits", lambda bits: (1 << bits) - 1)
    for worker in {0, workers - 1}:
        bus = ReplyBus(1, 10, worker, workers)
        sinks = [bus.register()[0] for _ in range(3)]
        assert [bus.worker_of(sink) for sink in sinks] == [worker] * 3
        assert len({sink.request_id for sink in sinks}) == 3
        for sink in sinks:
            record = Record(Envelope(1), Invoke("inv_1" + "7" * 33, GREETER, b"1", submit_sink=sink))
            decoded = decode_record(encode_record(record)).body
            assert isinstance(decoded, Invoke) and decoded.submit_sink == IngressSink(1, sink.request_id)
            bus.release(sink)
