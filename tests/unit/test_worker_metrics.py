"""The node-wide `/metrics` of several workers: every sample labelled with its worker, each family's samples together."""

from __future__ import annotations

from duro.worker_metrics import labelled_samples, merge_worker_metrics


def test_a_label_is_added_to_samples_with_and_without_labels() -> None:
    assert labelled_samples('duro_x_total{partition="1"} 3.0', 0) == 'duro_x_total{worker="0",partition="1"} 3.0'
    assert labelled_samples("duro_up 1.0", 2) == 'duro_up{worker="2"} 1.0'
    assert labelled_samples("duro_empty{} 1.0", 1) == 'duro_empty{worker="1"} 1.0'


def test_families_of_several_workers_are_merged_with_one_header_each() -> None:
    first = '# HELP a_total A.\n# TYPE a_total counter\na_total{k="x"} 1.0\n# HELP b B.\n# TYPE b gauge\nb 5.0\n'
    second = '# HELP a_total A.\n# TYPE a_total counter\na_total{k="x"} 2.0\n# HELP c C.\n# TYPE c gauge\nc 7.0\n'
    merged = merge_worker_metrics({1: second, 0: first}).splitlines()
    assert merged == [
        "# HELP a_total A.",
        "# TYPE a_total counter",
        'a_total{worker="0",k="x"} 1.0',
        'a_total{worker="1",k="x"} 2.0',
        "# HELP b B.",
        "# TYPE b gauge",
        'b{worker="0"} 5.0',
        "# HELP c C.",
        "# TYPE c gauge",
        'c{worker="1"} 7.0',
    ]
