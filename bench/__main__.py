"""Run every benchmark and print one JSON object per benchmark."""

from __future__ import annotations

import sys

from bench import auth_overhead


def main(argv: list[str]) -> int:
    auth_overhead.main(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
