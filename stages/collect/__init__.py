"""Collection: read sources (JSONL, JSON, Parquet, CSV, `datasets`) into problem rows."""

from stages.collect.spec import CollectConfig, FieldMap, HubSource, SourceSpec
from stages.collect.stage import run

__all__ = ["CollectConfig", "FieldMap", "HubSource", "SourceSpec", "run"]
