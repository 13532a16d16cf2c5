"""``sec-oracle``: the command line. It only parses and prints.

Rules:
- Every subcommand is a plain function ``(args) -> int`` that tests can call.
- Subcommand groups live beside what they drive and add themselves through a
  ``register(subparsers)`` function listed in ``GROUPS``.
- An ``OracleError`` (bad input or environment) prints one line on stderr,
  ``sec-oracle: error: <what>``, and exits 2; so does a bad flag (argparse).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Final

from oracle.errors import OracleError

#: modules that define ``register(subparsers)`` for a group of subcommands
GROUPS: Final = (
    "oracle.campaign.cli",
    "oracle.replay",
    "oracle.record",
    "oracle.tables.cli",
    "oracle.libbpf.cli",
    "oracle.bench",
    "fuzz.cli",
    "oracle.coverage",
    "oracle.campaign.github",
    "oracle.corpus_add",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse prints usage first; keep the house rule of one line, exit 2.
        sys.stderr.write(f"sec-oracle: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sec-oracle", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in GROUPS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a group not written yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except OracleError as exc:
        sys.stderr.write(f"sec-oracle: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("sec-oracle: interrupted\n")
        return 130
    except BrokenPipeError:
        # `sec-oracle tables show 1.7.0 | head`: the reader left; not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
