"""Property: after any sequence of changes in Klaviyo, a reconciling run makes the dataset
equal the ground truth, and the history answers "who was in S on date D" for every earlier run."""

from __future__ import annotations

import random
from typing import Any

import pytest

from .conftest import Loader, Truth
from .scenario import Timeline, mutate

SEEDS = range(25)
RUNS = 3


def _settled(emu: Any) -> None:
    # A segment Klaviyo is still computing is never reconciled; here every segment is final.
    for segment_id in emu.segment_ids():
        emu.set_segment_flags(segment_id, is_processing=False)


@pytest.mark.parametrize("seed", SEEDS)
def test_dataset_follows_any_sequence_of_changes(
    duckdb_loader: Loader, truth: Truth, emu: Any, emulator_clock: Any, seed: int
) -> None:
    rng = random.Random(seed)
    _settled(emu)
    timeline = Timeline(duckdb_loader, truth)

    for run in range(RUNS):
        if run:
            mutate(emu, rng, timeline.deleted)
        timeline.run_and_check()

    timeline.check_history()
