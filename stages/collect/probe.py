"""Fail fast on a field path that matches nothing: a typo such as `problem: questoin` would otherwise
"succeed" with every row dropped as `missing_problem`."""

from __future__ import annotations

import difflib
from itertools import islice
from typing import Any

from stages.collect.fields import has_path, parse_path
from stages.collect.readers import SourceError, iter_source_records
from stages.collect.spec import FieldMap, SourceSpec

PROBE_ROWS = 1_000
DEFAULTS = FieldMap().paths()


class FieldPathError(SourceError):
    """A field path of a source that matches none of its first rows."""


def checked_fields(spec: SourceSpec) -> dict[str, str]:
    """The paths that must match: `problem` always; another field when it names something other than
    its default (the default `answer`, `solution`, `tests` mean "if the source has one")."""
    return {
        target: path
        for target, path in spec.fields.paths().items()
        if target == "problem" or path != DEFAULTS.get(target)
    }


def check_fields(spec: SourceSpec) -> None:
    """Raise FieldPathError (naming the file, the field and the keys the rows have) when a checked
    field path matches none of the source's first PROBE_ROWS objects. A path that matches some rows
    is fine: the others drop as `missing_problem`. Raises SourceError for a missing file."""
    wanted = {target: parse_path(path) for target, path in checked_fields(spec).items()}
    probe = min(PROBE_ROWS, spec.limit or PROBE_ROWS)
    records = [r for r, error, _ in islice(iter_source_records(spec), probe) if error is None]
    objects = [r for r in records if isinstance(r, dict)]
    if not objects:
        return  # nothing to judge: an empty file is reported, bad lines are dropped with reasons
    for target, tokens in wanted.items():
        if not any(has_path(r, tokens) for r in objects):
            raise FieldPathError(_message(spec, target, tokens, objects))


def _message(spec: SourceSpec, target: str, tokens: list[str | int], objects: list[dict[str, Any]]) -> str:
    keys = sorted({k for r in objects for k in r})
    path = spec.fields.paths()[target]
    text = (
        f"source {spec.name!r} ({spec.path or spec.hf}): field {target}: {path!r} matches none of the "
        f"first {len(objects)} rows; their keys: {', '.join(keys[:40])}"
    )
    close = difflib.get_close_matches(str(tokens[0]), keys, n=1)
    if close and close[0] != tokens[0]:
        text += f" (did you mean {close[0]!r}?)"
    return text
