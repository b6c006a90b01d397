"""Export stage: the SFT and RL sets (stage.py), which traces go into SFT (select.py), where the sets
live and how `datasets` loads them (layout.py), and the token statistics labelled with what counted
them (tokens.py)."""

from stages.export.stage import Export, ExportConfig, ExportDetails

__all__ = ["Export", "ExportConfig", "ExportDetails"]
