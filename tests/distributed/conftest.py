"""One local Ray for the distributed tests of a module (each run joins it instead of starting
its own), stopped when the module is done."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
