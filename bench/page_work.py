"""Page work: the CPU the source spends on each profile page, step by step, without HTTP.

`bench/throughput.py` measures a whole run, and on a shared 2-core machine its CPU figure
moves by a tenth from one run to the next, more than most single changes to the source's
own work are worth. This benchmark takes that work alone. It reads every profile page of the
emulator's `large` preset (or `--memberships N` of it) once into a temporary file, then
replays the pages in one thread through the steps a run takes with each of them, segment
after segment (a run walks four at once), timing each step by the thread's CPU clock:

- `decode`: the client's typed decoding of the page (`api.profile_pages`);
- `shape`: the worker's profiles, join times and keys of the page (`walk.events.Page`);
- `batch`: adding the page to a batch of the membership tables;
- `membership_rows`: a batch's `segment_memberships` and `segment_membership_history` tables;
- `fresh`: which profiles of a batch become rows (`rows.emitted.EmittedProfiles`);
- `profile_rows`: the `profiles` table of those;
- `free`: letting the batch go.

Left out: HTTP, the worker threads and their queue, and dlt's extract, normalize and load,
which `throughput.py` measures. Each replay is a fresh run (a new layout, so every profile
is new to it); the figures are the fastest of `--runs` replays, step by step.

Prints one JSON line: microseconds per page of each step and in all, and the replay's CPU
seconds per 100,000 memberships.
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from support import EmulatorPages, emulator_process, finish, large_preset_parser, log, machine

STEPS = ("decode", "shape", "batch", "membership_rows", "fresh", "profile_rows", "free")


def capture(base_url: str, api_key: str, path: Path) -> int:
    """Writes every segment's profile pages to `path`, segment after segment, with the
    walk's requests (pickled segment id and body, one after the other); returns how many."""
    emulator = EmulatorPages(base_url, api_key)
    pages = 0
    with path.open("wb") as file:
        for segment_id in emulator.segment_ids():
            for body, _ in emulator.profile_pages(segment_id):
                pickle.dump((segment_id, body), file, protocol=pickle.HIGHEST_PROTOCOL)
                pages += 1
    emulator.close()
    return pages


def recorded_pages(path: Path) -> Iterator[tuple[str, bytes]]:
    """The pages `capture` wrote, one at a time: memory holds one page, not the preset."""
    with path.open("rb") as file:
        while True:
            try:
                yield pickle.load(file)
            except EOFError:
                return


def replay(path: Path) -> tuple[dict[str, float], int, int]:
    """One replay of the recorded pages: CPU seconds of each step, pages, memberships."""
    from sources.klaviyo import settings
    from sources.klaviyo.api.decoding import decode_json
    from sources.klaviyo.api.profile_pages import decode_profile_page
    from sources.klaviyo.rows.emitted import EmittedProfiles
    from sources.klaviyo.rows.memberships import history_table, joined_times, memberships_table
    from sources.klaviyo.rows.profiles import page_profiles, profile_layout, unique_profiles_table
    from sources.klaviyo.walk.batches import MembershipBatch
    from sources.klaviyo.walk.events import Page

    layout = profile_layout(None, (), EmittedProfiles(across_walks=True))
    detected_at = datetime.now(timezone.utc)
    spent = dict.fromkeys(STEPS, 0.0)
    clock = time.thread_time
    batch = MembershipBatch(detected_at)
    pages = members = 0

    def rows_of(batch: MembershipBatch) -> None:
        started = clock()
        memberships_table(batch.members, batch.closures, batch)
        history_table(batch.members, batch.closures, batch)
        made = clock()
        copies, keys = batch.profile_copies()
        fresh = layout.emitted.fresh(copies, batch.detected_at, keys)
        picked = clock()
        if fresh:
            unique_profiles_table(fresh, layout)
        spent["membership_rows"] += made - started
        spent["fresh"] += picked - made
        spent["profile_rows"] += clock() - picked

    for segment_id, body in recorded_pages(path):
        started = clock()
        document = decode_profile_page(body) or decode_json(body)
        decoded = clock()
        profiles = page_profiles(document)
        page = Page(segment_id, profiles, joined_times(profiles))
        shaped = clock()
        batch.add_page(page)
        del document, profiles, page
        spent["decode"] += decoded - started
        spent["shape"] += shaped - decoded
        spent["batch"] += clock() - shaped
        pages += 1
        if batch.rows >= settings.MEMBERSHIP_BATCH_ROWS:
            members += len(batch.members)
            rows_of(batch)
            started = clock()
            batch = MembershipBatch(detected_at)
            spent["free"] += clock() - started
    members += len(batch.members)
    rows_of(batch)
    return spent, pages, members


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Records the pages, replays them `--runs` times; the figures of the fastest steps."""
    from sources.klaviyo import settings

    options = ["--dataset", "large", "--rate-limits", "off", "--latency", "0"]
    if args.memberships:
        options += ["--memberships", str(args.memberships)]
    with tempfile.TemporaryDirectory(prefix="klaviyo-page-work-") as folder:
        path = Path(folder) / "pages.pickle"
        with emulator_process(*options) as emulator:
            recorded = capture(emulator.base_url, emulator.api_key, path)
        log(f"page_work: {recorded} pages recorded; replaying {args.runs} times")
        best: dict[str, float] = {}
        totals: list[float] = []
        pages = members = 0
        # as during a walk (`walk.batches._fewer_collections`)
        gc.freeze()
        gc.set_threshold(*settings.WALK_GC_THRESHOLDS)
        for _ in range(args.runs):
            spent, pages, members = replay(path)
            totals.append(sum(spent.values()))
            best = {step: min(best.get(step, spent[step]), spent[step]) for step in STEPS}
    per_page = {step: round(seconds * 1e6 / pages, 1) for step, seconds in best.items()}
    return {
        "bench": "page_work",
        "failed_runs": int(not pages),
        "pages": pages,
        "memberships": members,
        "runs": args.runs,
        "us_per_page": per_page,
        "us_per_page_total": round(sum(best.values()) * 1e6 / pages, 1) if pages else 0.0,
        "cpu_s_per_100k_memberships": [
            round(total * 100_000 / members, 3) if members else 0.0 for total in sorted(totals)
        ],
        **machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = large_preset_parser(__doc__)
    parser.add_argument("--runs", type=int, default=3, help="replays of the pages (3)")
    args = parser.parse_args(argv)
    if args.memberships < 0 or args.runs < 1:
        parser.error("--memberships must not be negative, --runs at least 1")
    return finish(run(args))


if __name__ == "__main__":
    sys.exit(main())
