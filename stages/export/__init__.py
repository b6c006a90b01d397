"""Export stage: the SFT and RL sets (stage.py), which traces go into SFT (select.py), and the token
statistics labelled with what counted them (tokens.py)."""

from stages.export.stage import ExportConfig, run

__all__ = ["ExportConfig", "run"]
