"""longcot stages: plain functions from input shards + a typed config to kept/dropped shards and a report.

Nothing in this package imports Prefect, so every stage runs and tests without an orchestrator.
"""
