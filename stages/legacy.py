"""TRANSITIONAL: stages not yet moved onto the runner's map/global shapes, run whole in one unit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from stages.stage import Details, MapStage


class LegacyDetails(Details):
    model_config = ConfigDict(extra="allow")


class LegacyStage(MapStage[BaseModel]):
    parallel = False
    Details = LegacyDetails
    legacy: ClassVar[Callable[[Path, Any, Any], dict[str, Any]]]


def legacy_stage(
    name: str,
    config: type[BaseModel],
    fn: Callable[..., dict[str, Any]],
    resources: Callable[[Any], list[Path]] | None = None,
) -> LegacyStage:
    body: dict[str, Any] = {
        "name": name,
        "Config": config,
        "legacy": staticmethod(fn),
        "__module__": fn.__module__,
    }
    if resources is not None:
        body["resources"] = lambda self, c: resources(c)
    return type(name, (LegacyStage,), body)()
