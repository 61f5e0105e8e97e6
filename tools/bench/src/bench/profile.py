"""Where a service's CPU goes, by library: `python -m bench.profile notify.txt` on py-spy's raw output.

    uvx py-spy record --gil --nonblocking -r 50 -d 20 --format raw -o notify.txt -p <pid>

Each sample is given to the innermost frame that belongs to a known library (the event loop, asyncpg, aiokafka, the
HTTP stack, OpenTelemetry...), else to the service's own code ("app"), else to "other". The shares say what a
change to the code of the services can win at most, and what it cannot (docs/benchmark.md, "the floor").
"""

import re
import sys
from collections import Counter
from collections.abc import Iterable

# First match wins, tried on each frame from the innermost out.
LIBRARIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern))
    for name, pattern in (
        ("asyncpg", r"asyncpg/"),
        ("aiokafka", r"aiokafka/"),
        ("faststream", r"faststream/"),
        ("opentelemetry", r"opentelemetry/|trace/__init__|_decorator\.py|sampling\.py|propagat|attributes/"),
        ("pydantic", r"pydantic"),
        ("httpx", r"httpx/|httpcore/|h11/"),
        ("uvicorn+starlette+fastapi", r"uvicorn/|starlette/|fastapi/"),
        ("jwt+cryptography", r"jwt/|cryptography"),
        ("logging", r"logging/|kit/logs\.py"),
        ("prometheus_client", r"prometheus_client"),
        ("json", r"json/"),
        ("asyncio event loop", r"asyncio/|selectors\.py"),
    )
)
APP = re.compile(r"(kit|notify|routing|intake|agency_gateway|agency_simulator|schemas)/")


def shares(lines: Iterable[str]) -> tuple[int, Counter[str]]:
    """(samples, samples per library) of py-spy raw lines: `frame;frame;... count`."""
    total, by_library = 0, Counter[str]()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        by_library[_owner(stack.split(";"))] += int(count)
    return total, by_library


def _owner(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in LIBRARIES:
            if pattern.search(frame):
                return name
        if APP.search(frame):
            return "app"
    return "other"


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print(__doc__)
        return 2
    for path in paths:
        with open(path, encoding="utf-8") as raw:
            total, by_library = shares(raw)
        print(f"{path}: {total} samples")
        for name, count in by_library.most_common():
            print(f"  {100 * count / max(total, 1):5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
