"""The runner's map phases as Ray tasks, on this machine or across a Ray cluster.

Plain `ray.remote` tasks, one per unit, rather than Ray Data or prefect-ray's task runner: the runner
already cuts a stage into units and writes each unit's shards itself, so a task per unit is the whole
fit; Ray Data would re-cut the input into its own blocks, and prefect-ray runs whole Prefect tasks
(here: whole stages, which run one after another) on Ray, not the units inside them.

Every worker reads its unit's input and writes its shards under the run directory, so that directory
must be on a filesystem every node of the cluster mounts at the same path (NFS, Lustre, a FUSE-mounted
bucket); see docs/operations.md. Workers import `stages` themselves: every node needs the same longcot
installed (a local Ray inherits the driver's environment, PYTHONPATH included).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from stages.engine import DEFAULT_UNIT_ROWS, UNIT_ROWS_ENV, default_workers

T = TypeVar("T")
R = TypeVar("R")

INSTALL_HINT = 'the ray engine needs Ray: pip install -e ".[ray]" (or pip install ray)'
AUTH_HINT = (
    "a cluster with token authentication (Ray's default for `ray start --head`) also needs "
    "RAY_AUTH_MODE=token here and the head's token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
)


def import_ray() -> Any:
    """`ray`, or an ImportError whose one line says how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return ray


def task_options(resources: dict[str, float] | None) -> dict[str, Any]:
    """A stage's per-unit resources ({"GPU": 1, "CPU": 4, "accelerator_type:H100": 1}) as Ray task
    options (one CPU when none is named)."""
    wanted = dict(resources or {})
    options: dict[str, Any] = {"num_cpus": wanted.pop("CPU", 1)}
    if "GPU" in wanted:
        options["num_gpus"] = wanted.pop("GPU")
    if wanted:
        options["resources"] = wanted
    return options


class RayEngine:
    """Map phases as Ray tasks, one per unit, results in unit order.

    `address`: "auto" (the cluster this machine joined with `ray start`), "HOST:PORT" (a head node's GCS
    address) or "ray://HOST:10001" (Ray Client); None starts a private local Ray with `workers` CPUs.
    `workers` is what the runner reports and sizes by: given, or the cluster's CPU count."""

    def __init__(self, workers: int | None = None, unit_rows: int | None = None, address: str | None = None):
        self._ray = ray = import_ray()
        self._owned = False
        if not ray.is_initialized():
            common = {"logging_level": logging.WARNING, "log_to_driver": False}
            if address:
                try:
                    ray.init(address=address, **common)
                except ConnectionError as exc:
                    raise ConnectionError(f"{exc}; {AUTH_HINT}") from None
            else:
                ray.init(num_cpus=workers or default_workers(), include_dashboard=False, **common)
            self._owned = True
        self.workers = max(1, workers or int(ray.cluster_resources().get("CPU", 1)))
        self.unit_rows = unit_rows or int(os.environ.get(UNIT_ROWS_ENV, DEFAULT_UNIT_ROWS))
        self._remote: dict[Callable[..., Any], Any] = {}

    def map(
        self, fn: Callable[[T], R], items: Iterable[T], resources: dict[str, float] | None = None
    ) -> list[R]:
        """fn over items as Ray tasks, each with `resources`; results in item order. The first task
        to fail cancels the rest and raises its own exception (not Ray's wrapper)."""
        ray = self._ray
        todo = list(items)
        self._check_feasible(resources or {})
        if fn not in self._remote:
            # workers are reused across units (also for GPU tasks, whose Ray default is a fresh process
            # per task), so a stage's `open` state is built once per worker, as on the local engine
            self._remote[fn] = ray.remote(max_calls=0)(fn)
        remote = self._remote[fn]
        refs = [remote.options(**task_options(resources)).remote(item) for item in todo]
        try:
            return ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            for ref in refs:
                ray.cancel(ref)
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            raise cause from None

    def _check_feasible(self, resources: dict[str, float]) -> None:
        """A request no node can meet would wait forever: fail at once, naming what is missing. (An
        autoscaling cluster must have one node of the needed kind up before the run.)"""
        if not resources:
            return
        nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]
        if any(all(node.get(k, 0) >= v for k, v in resources.items()) for node in nodes):
            return
        most = {k: max((node.get(k, 0) for node in nodes), default=0) for k in resources}
        raise ValueError(
            f"a unit needs {resources} on one node but no node of the Ray cluster has that (at most "
            f"{most} on a node); start nodes with them (ray start --num-gpus N)"
        )

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()
        self._owned = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
