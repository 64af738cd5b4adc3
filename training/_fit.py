"""Making conversational examples fit ``max_length`` without losing their completion.

TRL truncates the *end* of a too-long sequence, which for a long multi-turn
history cuts the very reply the example trains on (an SFT example with no
completion tokens contributes nothing, or NaN). Here the oldest
(user, assistant) pairs of the prompt are dropped first, keeping a leading
system message and the last user message; an example whose last user
message alone leaves no room for a reply is dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FitStats:
    examples: int  # examples kept
    trimmed: int  # examples whose oldest turns were dropped
    dropped: int  # examples with no room left for the reply

    def as_dict(self) -> dict[str, int]:
        return {"examples": self.examples, "trimmed": self.trimmed, "dropped": self.dropped}


def _count(tokenizer: Any, messages: list[dict[str, str]], *, generation_prompt: bool = False) -> int:
    out = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=generation_prompt)
    ids = out["input_ids"] if hasattr(out, "keys") else out
    return len(ids)


def _too_long(tokenizer: Any, prompt: list[dict[str, str]], answers: list[list[dict[str, str]]], max_length: int) -> bool:
    return max(_count(tokenizer, prompt + a) for a in answers) > max_length


def fit_rows(rows: list[dict[str, Any]], tokenizer: Any, max_length: int, *, trim: bool = True) -> tuple[list[dict[str, Any]], FitStats]:
    """Return the rows that fit (prompts trimmed from the oldest turn), with counts.

    Works on prompt-completion rows and on DPO rows (the longer of chosen and
    rejected decides)."""
    kept: list[dict[str, Any]] = []
    trimmed = dropped = 0
    for row in rows:
        answers = [row["completion"]] if "completion" in row else [row["chosen"], row["rejected"]]
        prompt = list(row["prompt"])
        start = 1 if prompt and prompt[0]["role"] == "system" else 0

        cut = False
        while trim and len(prompt) - start > 1 and _too_long(tokenizer, prompt, answers, max_length):
            del prompt[start:start + 2]
            cut = True
        if _count(tokenizer, prompt, generation_prompt=True) >= max_length:
            dropped += 1
            continue
        trimmed += cut
        kept.append({**row, "prompt": prompt})
    return kept, FitStats(len(kept), trimmed, dropped)
