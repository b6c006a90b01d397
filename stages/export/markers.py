"""How the assistant turn of an SFT row marks its reasoning and its answer.

* `think` (DeepSeek-R1, most open sets): "<think>\\n{reasoning}\\n</think>\\n\\n{response}".
* `thought_solution` (Sky-T1 and OpenThoughts-114k, whose system prompt asks for it: open-thoughts/
  open-thoughts, open_thoughts/prompt.py SKY_T1_SYSTEM_PROMPT):
  "<|begin_of_thought|>\\n\\n{reasoning}\\n\\n<|end_of_thought|>\\n\\n<|begin_of_solution|>\\n\\n{response}
  \\n\\n<|end_of_solution|>".
"""

from __future__ import annotations

from typing import Literal

import polars as pl

Markers = Literal["think", "thought_solution"]

_LAYOUT: dict[str, tuple[str, str, str]] = {
    # (before the reasoning, between reasoning and response, after the response)
    "think": ("<think>\n", "\n</think>\n\n", ""),
    "thought_solution": (
        "<|begin_of_thought|>\n\n",
        "\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n",
        "\n\n<|end_of_solution|>",
    ),
}


def assistant_turn(markers: Markers = "think") -> pl.Expr:
    """The reasoning and the final response of a trace, in the chosen marker layout."""
    before, between, after = _LAYOUT[markers]
    return pl.concat_str(
        pl.lit(before),
        pl.col("reasoning").fill_null(""),
        pl.lit(between),
        pl.col("response").fill_null(""),
        pl.lit(after),
    )
