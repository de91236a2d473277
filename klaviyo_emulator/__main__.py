"""`python -m klaviyo_emulator` / `klaviyo-emulator`: serve an emulated account until stopped."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from .emulator import Emulator
from .settings import PRESETS
from .wire.faults import FAULT_KINDS
from .wire.ratelimit import parse_mode


def _rate_limits(value: str) -> str | float:
    # The limiter's own parser is the one rule for what a mode may be.
    try:
        scale = parse_mode(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value if scale is None or value.strip().lower() == "real" else scale


def _latency(value: str) -> float | str:
    if value == "realistic":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("use seconds or 'realistic'") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klaviyo-emulator",
        description="Serve a local emulation of Klaviyo's segments API.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    parser.add_argument("--dataset", choices=sorted(PRESETS), default="demo")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rate-limits", type=_rate_limits, default="off", help="off, real, or a time-scale factor"
    )
    parser.add_argument("--latency", type=_latency, default=0.0, help="seconds, or 'realistic'")
    parser.add_argument("--jitter", type=float, default=0.0, help="latency jitter in seconds")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability of a fault")
    parser.add_argument("--fault-kind", choices=sorted(FAULT_KINDS), default="503")
    parser.add_argument("--profiles", type=int, default=None, help="override the preset's size")
    parser.add_argument("--memberships", type=int, default=None, help="override the preset's size")
    parser.add_argument(
        "--stats-file",
        default=None,
        help="on stopping, write request counts and rate-limit windows to this file as JSON",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Start the emulator, print `base_url=` and `api_key=`, serve until SIGINT or SIGTERM."""
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.fault_rate <= 1.0:
        print("--fault-rate must be between 0 and 1", file=sys.stderr)
        return 2
    faults = {"kind": args.fault_kind, "p": args.fault_rate} if args.fault_rate else None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    emulator = Emulator(
        dataset=args.dataset,
        seed=args.seed,
        port=args.port,
        host=args.host,
        rate_limits=args.rate_limits,
        latency=args.latency,
        jitter=args.jitter,
        faults=faults,
        profiles=args.profiles,
        memberships=args.memberships,
    )
    with emulator:
        print(f"base_url={emulator.base_url}", flush=True)
        print(f"api_key={emulator.api_key}", flush=True)
        while not stop.wait(0.5):
            pass
    if args.stats_file:
        with open(args.stats_file, "w", encoding="utf-8") as output:
            json.dump(emulator.report(), output)
    print("stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
