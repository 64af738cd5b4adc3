"""The persona generator role (paper Appendix B.1): writes new profiles or
personalities from a few examples of the pool.

    generator = PersonaGenerator(model, {"profiles": ..., "personalities": ...}, sampling)
    items = await generator(GenerationRequest("profile", examples, 20, iteration=3, seed=7))

It is the ``Generate`` callable that ``aloesim.environment.personas.grow_pool``
expects. The model is asked for plain text, one item per line; small models
number them, bullet them, add headings or chatter, so ``split_items`` cleans
the reply: numbering, bullets, markdown emphasis, "Profile 3:" labels,
surrounding quotes and blank lines are stripped, and lines that are too short
to be an item, that introduce a list (ending with ':'), that are dialogue turns
("Assistant: ...", or "A: ..." spoken in the first or second person) or in
which the model talks about itself ("as an AI") are dropped; a one-letter
label of a described person ("A: 34-year-old nurse ...") is stripped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..core.errors import ConfigError
from ..environment.personas import GenerationRequest
from .gateway._types import CallContext, ChatModel, Sampling

__all__ = ["PROMPT_KEYS", "PersonaGenerator", "split_items"]

#: prompt key (in ``cfg.prompts``) per pool kind
PROMPT_KEYS = {"profile": "profiles", "personality": "personalities"}

_LEAD = re.compile(
    r"""^\s*(?:
        (?:[-*+\u2022\u2023\u25cf\u25e6\u2013\u2014>]\s*)+      # bullets, dashes, quote marks
      | \(?\d{1,3}\s*[.):\]]\s*                                  # 1.  1)  (1)  1:  1]
      | \#{1,6}\s*                                               # markdown headings
    )""",
    re.VERBOSE,
)
_LABEL = re.compile(
    r"^\s*(?:\*\*|__)?\s*(?:user\s+)?(?:profile|personality|persona|description|person|user)"
    r"(?:\s+(?:traits|description))?\s*#?\s*\d{0,3}\s*(?:\*\*|__)?\s*[:.\-\u2013\u2014]\s*(?:\*\*|__)?\s*",
    re.IGNORECASE,
)
_EMPHASIS = re.compile(r"(\*\*|__)")
# chatter, not items: dialogue turns ("Assistant: ...") and the model talking about itself
_CHATTER = re.compile(r"^(?:user|assistant|human|system)\s*:|\b(?:as an ai|i am an ai|you are an ai|language model)\b",
                      re.IGNORECASE)
# a one-letter label ("A: ...", "B. ..."): an enumerated item ("A: 34-year-old nurse ...") or a dialogue
# turn ("A: Yes, thank you!"); a turn speaks in the first or second person, an item describes someone
_LETTER = re.compile(r"^\s*\(?[A-H]\s*[:.)]\s+")
_SPOKEN = re.compile(r"\b(?:i|i'm|i've|me|my|we|you|your|thanks?)\b", re.IGNORECASE)


def _clean(line: str) -> str:
    prev = None
    while prev != line:
        prev = line
        line = _LEAD.sub("", line, count=1)
        line = _LABEL.sub("", line, count=1)
    line = _EMPHASIS.sub("", line).strip()
    if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'`":
        line = line[1:-1].strip()
    if len(line) >= 2 and line[0] in "\u201c\u2018" and line[-1] in "\u201d\u2019":
        line = line[1:-1].strip()
    return line


def split_items(text: str, *, min_words: int = 5, limit: int | None = None) -> list[str]:
    """The items of a generator reply, one per line, cleaned (see the module
    docstring), without duplicates, at most ``limit``."""
    out: list[str] = []
    seen: set[str] = set()
    for raw in text.splitlines():
        lettered = _LETTER.match(raw)
        if lettered:
            raw = raw[lettered.end():]
            if _SPOKEN.search(raw):
                continue
        line = _clean(raw)
        if not line or line.endswith(":") or len(line.split()) < min_words:
            continue
        if line.lower().startswith(("here are", "here is", "sure", "certainly", "i hope", "note:", "these ",
                                    "you should", "your task", "important")):  # chatter or the prompt echoed
            continue
        if _CHATTER.search(line):
            continue
        if line not in seen:
            seen.add(line)
            out.append(line)
            if limit is not None and len(out) >= limit:
                break
    return out


class PersonaGenerator:
    """Writes new pool items with a ``ChatModel`` (role name ``generator``).

    ``prompts`` maps 'profiles' and 'personalities' to templates with the
    placeholders ``{n}`` (batch size) and ``{examples}`` (one example per line)."""

    role = "generator"

    def __init__(self, model: ChatModel, prompts: Mapping[str, str], sampling: Sampling | None = None, *,
                 min_words: int = 5, run_id: int | None = None) -> None:
        for key in PROMPT_KEYS.values():
            template = prompts.get(key)
            if not template:
                raise ConfigError(f"prompts.{key}", template, "a prompt template with {n} and {examples}")
            try:
                template.format(n=1, examples="x")
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(f"prompts.{key}", template[:60] + "...",
                                  f"a template whose only placeholders are {{n}} and {{examples}} ({exc!r})") from None
        self.model = model
        self.prompts = {k: str(prompts[k]) for k in PROMPT_KEYS.values()}
        self.sampling = sampling or Sampling(temperature=1.0, max_tokens=1024, top_p=0.95)
        self.min_words = min_words
        self.run_id = run_id

    def messages(self, request: GenerationRequest) -> list[dict[str, str]]:
        template = self.prompts[PROMPT_KEYS[request.kind]]
        content = template.format(n=request.n, examples="\n".join(request.examples))
        return [{"role": "user", "content": content}]

    async def __call__(self, request: GenerationRequest) -> list[str]:
        s = self.sampling
        sampling = Sampling(temperature=s.temperature, max_tokens=s.max_tokens, top_p=s.top_p, seed=request.seed)
        result = await self.model.chat(self.messages(request), role=self.role, sampling=sampling,
                                       context=CallContext(run_id=self.run_id, turn=request.iteration))
        return split_items(result.text, min_words=self.min_words, limit=request.n)
