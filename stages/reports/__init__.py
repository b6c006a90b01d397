"""Run-level reports built from a finished run directory (no Prefect): the dataset card."""
