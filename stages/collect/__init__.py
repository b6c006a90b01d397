"""Collection: read sources (JSONL, JSON, Parquet, CSV, `datasets`) into problem rows."""

from stages.collect.probe import FieldPathError, check_fields
from stages.collect.readers import SourceError
from stages.collect.spec import CollectConfig, FieldMap, HubSource, SourceSpec, file_sources
from stages.collect.stage import Collect

__all__ = [
    "Collect",
    "CollectConfig",
    "FieldMap",
    "FieldPathError",
    "HubSource",
    "SourceError",
    "SourceSpec",
    "check_fields",
    "file_sources",
]
