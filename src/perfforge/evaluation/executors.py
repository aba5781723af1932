"""Where experiment work runs: in this process, in local worker processes, or on a Ray cluster.

``map_unordered(fn, items)`` yields ``fn(item)`` results as they finish. ``fn`` must be a picklable
module-level function. Ray (``executor="ray"``) starts a local instance unless one is already running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

from perfforge.core.errors import ConfigError

T = TypeVar("T")
EXECUTORS = ("local", "ray")


def map_unordered(fn: Callable[[Any], T], items: Iterable[Any], *, executor: str = "local",
                  jobs: int = 1) -> Iterator[T]:
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor '{executor}' (allowed: {', '.join(EXECUTORS)})")
    items = list(items)
    if executor == "ray":
        yield from _ray(fn, items, jobs)
    elif jobs <= 1:
        yield from (fn(item) for item in items)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for fut in as_completed([pool.submit(fn, item) for item in items]):
                yield fut.result()


def _ray(fn: Callable[[Any], T], items: list[Any], jobs: int) -> Iterator[T]:
    try:
        import ray
    except ImportError:
        raise ConfigError("executor 'ray' needs the ray package: pip install 'perfforge[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=max(1, jobs), include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(fn)
        pending = [remote.remote(item) for item in items]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
    finally:
        if started:
            ray.shutdown()
