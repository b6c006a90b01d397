"""Prompt templates: Markdown files in this package (or any file path) with `{name}` placeholders.

Placeholders are replaced literally (not with `str.format`), so LaTeX braces such as `\\boxed{}`
need no escaping. Every template carries a content hash: generation rows record it, so a changed
template never reuses samples cached for the old one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    text: str
    hash: str

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(_PLACEHOLDER.findall(self.text))

    def render(self, **values: str) -> str:
        """Fill the placeholders that have values; unknown `{...}` (e.g. `\\boxed{}`) stay as written."""
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), self.text)


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@lru_cache(maxsize=64)
def load_template(name: str) -> PromptTemplate:
    """A template by package name (`teacher_math` -> prompts/teacher_math.md) or by file path."""
    path = Path(name)
    if path.suffix and path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        resource = resources.files("prompts").joinpath(f"{name}.md")
        if not resource.is_file():
            raise FileNotFoundError(
                f"no prompt template {name!r} (looked for prompts/{name}.md and a file path)"
            )
        text = resource.read_text(encoding="utf-8")
    return PromptTemplate(name=name, text=text, hash=text_hash(text))
