"""A bounded soak: consecutive incremental runs with random account changes and random faults.

The soak itself lives in `bench/soak.py` (which runs longer); after every run it compares the
dataset with the emulator's ground truth, and every few runs it makes one run fail past the
retry bound, which must commit nothing and be caught up by the next run.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SOAK = Path(__file__).parents[2] / "bench" / "soak.py"


def _soak_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("klaviyo_soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_soak_keeps_the_dataset_equal_to_the_ground_truth(tmp_path: Path) -> None:
    soak = _soak_module()
    config = soak.SoakConfig(
        runs=12,
        dataset="tiny",
        seed=3,
        fault_rate=0.12,
        fail_every=5,
        page_size=5,
        batch_rows=10,
        changes_per_run=8,
    )

    report = soak.soak(config, tmp_path)

    assert report.mismatches == []
    assert report.unexpected_failures == 0
    assert report.failed_on_purpose == report.recovered == 2
    assert report.completed == 10
    assert report.retries > 0 and sum(report.faults_injected.values()) > report.retries / 2
    assert {"join", "rejoin", "leave"} <= set(report.changes)
