"""Exponential backoff, the one formula for every "try again later" that counts its failures (the gateway's
deliveries, notify's notices). Imports nothing, so a pure domain module may use it."""


def backoff(failures: int, first: float, cap: float, jitter: float | None = None) -> float:
    """Seconds to wait after `failures` failed tries in a row: `first` after one, doubling with each more, at most
    `cap`. A `jitter` in [0, 1) spreads the wait to 50–150% (before the cap), so that many waiting together do not
    all come back at once."""
    delay = first * 2.0 ** max(0, failures - 1)
    if jitter is not None:
        delay *= 0.5 + jitter
    return min(cap, delay)
