"""``skin-capture-model``: data building, baselines (and, once merged, training/export).

Minimal registration from the data branch; each subcommand lives in its own module with an
``add_parser(subparsers)`` function that sets ``func``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from model_export import baselines, build_data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skin-capture-model", description="Build data for, and evaluate, the quality model."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    build_data.add_parser(sub)
    baselines.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
