"""The oracle world: a deterministic OpenAI-compatible chat server whose roles
follow known rules, so every instrument of aloesim can be checked against a
right answer before real money is spent on GPT-4o.

    from tests.support.oracle_world import OracleWorld
    with OracleWorld(leak_rate=0.1, seed=3) as url:      # http://127.0.0.1:PORT/v1
        ...  # point aloe at it: backend=openai backend.base_url=URL backend.api_key_env=null

or, from a checkout, in a terminal of its own (prints ``PORT <n>``, serves until Ctrl-C):

    python -m tests.support.oracle_world --port 8765 --judge coverage

It listens on 127.0.0.1 only and answers ``GET /v1/models`` and
``POST /v1/chat/completions``. It recognises each role from the prompts of
``conf/prompts/paper.yaml`` and answers by these rules:

- a profile is a list of **facts**: its pieces between ``.``, ``;`` and
  ``,`` that hold at least two content words (``facts``); a fact's
  **keywords** are its content words (four letters or more, not a stop word);
- **user** (B.2.1 system prompt): at its k-th message reveals fact k, as
  ``"Fun fact about me: <keywords of fact k, in reverse order>. What do you
  think?"`` (reversed, so no two consecutive words of the profile appear:
  revealing is not reciting); past the last fact it reveals nothing new;
- **inducer** (B.2.2): ``{"profile": <the revealed facts, verbatim, joined>,
  "personalities": null}``; a fact is revealed when at least half its
  keywords appear in A's messages (``null`` before the first one);
- **preferred** (B.2.3): a reply that quotes the keywords of every fact of the
  inferred profile in its hint, padded with filler to ``reply_words`` words
  (times ``length_ratio``);
- **rejected** and any other plain chat request: by the ``model`` asked for.
  ``oracle-adapting`` replies with the keywords of every fact revealed so far
  in the user's "Fun fact" messages; any other model (``oracle``,
  ``oracle-static``...) with filler only; both are ``reply_words`` long;
- **judge** (B.3): ``judge="coverage"`` scores the reply by the share of the
  persona's facts it covers (half of a fact's keywords present):
  ``1 + ceil(4 * covered / facts)``; ``"constant"`` always ``constant_score``;
  ``"random"`` a seeded uniform draw from 1-5. Asked for ``logprobs`` it
  returns them for ``{"score": N}`` with a known distribution at the digit:
  ``logprob_peak`` on N and the rest shared evenly by the other four scores
  (``expected_score`` gives the expected value);
- **preference judge**: ``"coverage"`` picks the reply covering more facts (a
  tie by a seeded draw); ``"position"`` always answers A; ``"constant"`` too;
  ``"random"`` a seeded draw.

Planted faults, each decided by a seeded hash of the request (so the same
request gets the same answer, and a retry with another seed a fresh draw):

- ``leak_rate``: a user message recites the whole profile and personality;
- ``role_flip_rate``: a user message answers as an AI assistant;
- ``truncate_rate``: a responder reply (preferred, rejected, plain chat) is
  cut to half its words with ``finish_reason: "length"``;
- ``empty_rate``: a responder reply with empty content (the gateway retries it);
- ``duplicate_rate``: for a user message, the preferred and the plain replies
  are the same fixed text (preferred == rejected at that node).

``world.served`` lists every reply served (role, model, planted fault,
finish_reason, text) and ``world.planted(kind, role=None)`` counts them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "ADAPTING",
    "JUDGE_MODES",
    "PERSONALITIES",
    "PROFILES",
    "STATIC",
    "OracleWorld",
    "Served",
    "facts",
    "keywords",
    "write_benchmark",
]

ADAPTING = "oracle-adapting"   # the evaluated model that uses what the user revealed
STATIC = "oracle-static"       # the evaluated model that never does
JUDGE_MODES = ("coverage", "constant", "random", "position")

# Oracle personas: every fact has distinctive keywords, so coverage is unambiguous.
PROFILES = (
    ("Keeps honeybees on a Lisbon rooftop; restores vintage bicycles in a garage workshop; "
    "sings baritone in a harbour choir; raises two teenage daughters; grows chilli peppers on balconies; "
    "translates Danish crime novels."),
    ("Repairs antique clocks for museums; swims across cold mountain lakes; collects Soviet postage stamps; "
    "bakes rye sourdough every Sunday; coaches junior chess tournaments; drives an electric scooter."),
    ("Studies marine biology at Galway; volunteers at seal rescue shelters; plays Irish fiddle at sessions; "
    "paints watercolour seascapes; climbs limestone crags; brews ginger kombucha."),
    ("Runs a ramen kitchen in Osaka; trains for ultramarathon races; restores lacquered furniture; "
    "keeps bonsai junipers; reads Portuguese poetry aloud; fosters abandoned kittens."),
    ("Pilots cargo helicopters over Alaska; carves walrus ivory replicas; hunts wild mushrooms; "
    "plays blues harmonica; builds wooden kayaks; tracks northern lights forecasts."),
    ("Teaches flamenco guitar in Seville; breeds racing pigeons; restores Moorish ceramic tiles; "
    "cooks saffron paella outdoors; sketches cathedral gargoyles; studies Arabic calligraphy."),
)
PERSONALITIES = (
    "Dry humour, terse replies, impatient with small talk.",
    "Warm, chatty, loves tangents and exclamation marks.",
    "Blunt, curious, precise, asks many follow-up questions.",
)

_STOP_WORDS = """about above after again also always because been before being below between both
could does doing down during each every from further have having here into itself just like made make many
more most much must only other over same should some such than that their them then there these they this
those through under until very what when where which while will with would your yours years year
"""
_STOP = frozenset(_STOP_WORDS.split())
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
_FILLER_TEXT = ("That sounds interesting and I would like to hear more about it when you have time to share "
                "what is on your mind today and how things are going in general for you lately my friend")
_FILLER = _FILLER_TEXT.split()
_AI = "As an AI language model, I'm here to help! How can I assist you today?"
_DUPLICATE = "I hear you. Tell me more about that."

# how each role's prompt (conf/prompts/paper.yaml) is recognised
_USER = "play the role of a person with the following profile"
_INDUCER = "Analyze a conversation (presented below with 'A' as the user"
_PREFERRED = "(Hint: Below is the known user profile and personalities"
_JUDGE = "a message that the user sent to a chatbot. You will also be given a response from a model"
_PREFERENCE = "two candidate responses, A and B"


def keywords(text: str) -> list[str]:
    """Content words of a text, lower-cased, in order, without repeats."""
    out: list[str] = []
    for w in _WORD.findall(text.lower()):
        w = w.strip("'-")
        if len(w) >= 4 and w not in _STOP and w not in out:
            out.append(w)
    return out


def facts(profile: str) -> list[str]:
    """The facts of a profile: its pieces between ``.``, ``;`` and ``,`` with at
    least two keywords (a piece with fewer joins the next one)."""
    out: list[str] = []
    carry = ""
    for piece in re.split(r"[.;,]", profile):
        piece = (carry + " " + piece).strip() if carry else piece.strip()
        if len(keywords(piece)) >= 2:
            out.append(piece)
            carry = ""
        else:
            carry = piece
    if carry and out:
        out[-1] = out[-1] + ", " + carry
    elif carry:
        out.append(carry)
    return out


def _covered(fact: str, words: set[str]) -> bool:
    kw = keywords(fact)
    return bool(kw) and sum(w in words for w in kw) * 2 >= len(kw)


def coverage(profile: str, text: str) -> tuple[int, int]:
    """(facts of ``profile`` covered by ``text``, facts in all)."""
    words = set(keywords(text))
    fs = facts(profile)
    return sum(_covered(f, words) for f in fs), len(fs)


def write_benchmark(folder: str | Path, profiles: int = len(PROFILES),
                    personalities: int = len(PERSONALITIES)) -> tuple[Path, Path]:
    """The oracle personas as benchmark/import files in the published format
    (one JSON string per line); returns (profiles file, personalities file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p, q = folder / "oracle_profiles.jsonl", folder / "oracle_personalities.jsonl"
    p.write_text("".join(json.dumps(t) + "\n" for t in PROFILES[:profiles]))
    q.write_text("".join(json.dumps(t) + "\n" for t in PERSONALITIES[:personalities]))
    return p, q


@dataclass(frozen=True)
class Served:
    """One reply the world served."""

    role: str                 # user | inducer | preferred | plain | judge | preference | other
    model: str
    text: str
    fault: str | None = None  # leak | role_flip | truncated | empty | duplicate
    finish_reason: str = "stop"


@dataclass
class OracleWorld:
    """The server; a context manager yielding its base URL (``.../v1``)."""

    seed: int = 0
    judge: str = "coverage"
    constant_score: int = 3
    logprob_peak: float = 0.7
    leak_rate: float = 0.0
    role_flip_rate: float = 0.0
    truncate_rate: float = 0.0
    empty_rate: float = 0.0
    duplicate_rate: float = 0.0
    length_ratio: float = 1.0
    reply_words: int = 60
    port: int = 0
    served: list[Served] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.judge not in JUDGE_MODES:
            raise ValueError(f"judge={self.judge!r}; expected one of {JUDGE_MODES}")
        for name in ("leak_rate", "role_flip_rate", "truncate_rate", "empty_rate", "duplicate_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected a rate in [0, 1]")
        if not 1 <= self.constant_score <= 5 or not 0.2 < self.logprob_peak < 1:
            raise ValueError("constant_score must be 1-5 and logprob_peak in (0.2, 1)")
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> str:
        world = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # one segment per reply: headers and body written apart would wait on delayed ACKs
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "owned_by": "oracle"} for m in ("oracle", ADAPTING, STATIC)]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                    if not self.path.rstrip("/").endswith("/chat/completions"):
                        raise ValueError("not found")
                    self._send(200, world.complete(body))
                except (ValueError, KeyError, TypeError) as exc:
                    self._send(400, {"error": {"message": f"bad request: {exc}"}})

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="oracle-world", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        return self.url

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- what was served ----------------------------------------------------------------------------
    def planted(self, kind: str, role: str | None = None) -> int:
        """How many served replies carry the planted fault ``kind`` (of ``role``)."""
        with self._lock:
            return sum(1 for s in self.served if s.fault == kind and (role is None or s.role == role))

    def count(self, role: str) -> int:
        with self._lock:
            return sum(1 for s in self.served if s.role == role)

    def expected_score(self, score: int) -> float:
        """The expected value of the judge's distribution around ``score``."""
        rest = (1 - self.logprob_peak) / 4
        return sum(k * (self.logprob_peak if k == score else rest) for k in range(1, 6))

    # -- the rules ------------------------------------------------------------------------------------
    def _draw(self, *key: Any) -> float:
        h = hashlib.sha256(json.dumps([self.seed, *key], default=str).encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """The chat completion for one request body (also usable without HTTP)."""
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        model = str(body.get("model") or "oracle")
        seed = body.get("seed")
        structured = body.get("response_format") is not None
        first = str(messages[0].get("content") or "")
        last = str(messages[-1].get("content") or "")
        logprobs = None
        if messages[0].get("role") == "system" and _USER in first:
            served = self._user(first, messages, model, seed)
        elif _INDUCER in last:
            served = self._inducer(last, model)
        elif _PREFERENCE in last:
            served = self._preference(last, model, seed, structured)
        elif _JUDGE in last:
            served, score = self._judge(last, model, seed, structured)
            if body.get("logprobs"):
                logprobs = self._score_logprobs(served.text, score, int(body.get("top_logprobs") or 5))
        elif _PREFERRED in last:
            served = self._preferred(messages, last, model, seed)
        else:
            served = self._plain(messages, model, seed)
        with self._lock:
            self.served.append(served)
        prompt_words = sum(len(str(m.get("content") or "").split()) for m in messages)
        choice: dict[str, Any] = {"index": 0, "finish_reason": served.finish_reason,
                                  "message": {"role": "assistant", "content": served.text}}
        if body.get("logprobs"):
            choice["logprobs"] = logprobs or {"content": [
                {"token": t, "logprob": -0.05, "bytes": None, "top_logprobs": []} for t in served.text.split()]}
        return {"id": f"oracle-{len(self.served)}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": [choice],
                "usage": {"prompt_tokens": prompt_words, "completion_tokens": len(served.text.split()),
                          "total_tokens": prompt_words + len(served.text.split())}}

    def _user(self, system: str, messages: Sequence[dict[str, Any]], model: str, seed: Any) -> Served:
        profile = _field(system, "Profile: ")
        personality = _field(system, "Personalities: ")
        k = sum(1 for m in messages if m.get("role") == "assistant")  # its own earlier messages
        key = ("user", profile, personality, k, seed)
        if self._draw("leak", *key) < self.leak_rate:
            return Served("user", model, f"Here is everything about me. {profile} {personality}", "leak")
        if self._draw("flip", *key) < self.role_flip_rate:
            return Served("user", model, _AI, "role_flip")
        fs = facts(profile)
        if k < len(fs):
            text = f"Fun fact about me: {', '.join(reversed(keywords(fs[k])))}. What do you think?"
        else:
            text = "Nothing new to tell, really. What would you talk about?"
        return Served("user", model, text)

    def _inducer(self, prompt: str, model: str) -> Served:
        history = prompt.split(_INDUCER, 1)[1].split("Review the user's profile", 1)[0]
        said = " ".join(line[2:] for line in history.splitlines() if line.startswith("A:"))
        words = set(keywords(said))
        profile = _field(prompt.split("Review the user's profile", 1)[-1], "Profile: ")
        revealed = [f for f in facts(profile) if _covered(f, words)]
        text = json.dumps({"profile": "; ".join(revealed) if revealed else None, "personalities": None})
        return Served("inducer", model, text)

    def _judge(self, prompt: str, model: str, seed: Any, structured: bool) -> tuple[Served, int]:
        profile = _field(prompt, "Here is the user's profile: ")
        reply = prompt.split("Here is the model's response: ", 1)[-1].split("\nYou should follow", 1)[0]
        if self.judge == "coverage":
            covered, total = coverage(profile, reply)
            score = 1 + min(4, math.ceil(4 * covered / total)) if total else 1
        elif self.judge == "random":
            score = 1 + int(self._draw("judge", prompt, seed) * 5)
        else:
            score = self.constant_score
        text = json.dumps({"score": score}) if structured else str(score)
        return Served("judge", model, text), score

    def _score_logprobs(self, text: str, score: int, top: int) -> dict[str, Any]:
        rest = math.log((1 - self.logprob_peak) / 4)
        tops = sorted(({"token": str(k), "logprob": math.log(self.logprob_peak) if k == score else rest, "bytes": None}
                       for k in range(1, 6)), key=lambda t: -t["logprob"])[:max(5, top)]
        tokens = re.findall(r"\d|[^\d]+", text)
        return {"content": [{"token": t, "logprob": (math.log(self.logprob_peak) if t.isdigit() else -0.01),
                             "bytes": None, "top_logprobs": tops if t.isdigit() else []} for t in tokens]}

    def _preference(self, prompt: str, model: str, seed: Any, structured: bool) -> Served:
        profile = _field(prompt, "Here is the user's profile: ")
        a = prompt.split("Response A: ", 1)[-1].split("\nResponse B: ", 1)[0]
        b = prompt.split("Response B: ", 1)[-1].split("\nWhich response", 1)[0]
        if self.judge == "coverage":
            ca, cb = coverage(profile, a)[0], coverage(profile, b)[0]
            better = "A" if ca > cb else "B" if cb > ca else ("A" if self._draw("pref", prompt, seed) < 0.5 else "B")
        elif self.judge == "random":
            better = "A" if self._draw("pref", prompt, seed) < 0.5 else "B"
        else:
            better = "A"
        return Served("preference", model, json.dumps({"better": better}) if structured else better)

    def _reply(self, role: str, model: str, message: str, content: list[str], seed: Any, ratio: float) -> Served:
        if self._draw("duplicate", message) < self.duplicate_rate:
            return Served(role, model, _DUPLICATE, "duplicate")
        if self._draw("empty", role, message, seed) < self.empty_rate:
            return Served(role, model, "", "empty")
        target = max(len(content), round(self.reply_words * ratio))
        words = content + [_FILLER[i % len(_FILLER)] for i in range(target - len(content))]
        if self._draw("truncate", role, message, seed) < self.truncate_rate:
            return Served(role, model, " ".join(words[: max(1, len(words) // 2)]), "truncated", "length")
        return Served(role, model, " ".join(words) + ".")

    def _preferred(self, messages: Sequence[dict[str, Any]], last: str, model: str, seed: Any) -> Served:
        message, hint = last.split(" " + _PREFERRED, 1) if (" " + _PREFERRED) in last else (last, "")
        inferred = _field(hint, "Profile: ").split(". You should implicitly")[0]
        kws = [] if inferred.strip() in ("", "None") else [w for f in facts(inferred) for w in keywords(f)]
        content = (["Since", "you", "mentioned"] + kws + ["here", "is", "my", "take:"]) if kws else []
        return self._reply("preferred", model, message.strip(), content, seed, self.length_ratio)

    def _plain(self, messages: Sequence[dict[str, Any]], model: str, seed: Any) -> Served:
        message = str(messages[-1].get("content") or "")
        content: list[str] = []
        if model == ADAPTING:
            kws = [w for m in messages if m.get("role") == "user"
                   for w in _revealed(str(m.get("content") or ""))]
            content = (["Since", "you", "mentioned"] + kws + ["here", "is", "my", "take:"]) if kws else []
        return self._reply("plain", model, message, content, seed, 1.0)


def _field(text: str, label: str) -> str:
    """The rest of the line after ``label`` (empty when absent)."""
    if label not in text:
        return ""
    return text.split(label, 1)[1].split("\n", 1)[0].strip()


def _revealed(message: str) -> list[str]:
    m = re.search(r"Fun fact about me: ([^.]*)\.", message)
    return [w.strip() for w in m.group(1).split(",")] if m else []


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="the oracle world: a deterministic OpenAI-compatible server")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--judge", choices=JUDGE_MODES, default="coverage")
    for name in ("leak_rate", "role_flip_rate", "truncate_rate", "empty_rate", "duplicate_rate"):
        ap.add_argument("--" + name.replace("_", "-"), type=float, default=0.0)
    ap.add_argument("--length-ratio", type=float, default=1.0)
    ap.add_argument("--write-personas", metavar="DIR", help="write the oracle persona files into DIR and exit")
    args = ap.parse_args(argv)
    if args.write_personas:
        for path in write_benchmark(args.write_personas):
            print(path)
        return
    world = OracleWorld(seed=args.seed, judge=args.judge, port=args.port, leak_rate=args.leak_rate,
                        role_flip_rate=args.role_flip_rate, truncate_rate=args.truncate_rate,
                        empty_rate=args.empty_rate, duplicate_rate=args.duplicate_rate,
                        length_ratio=args.length_ratio)
    with world as url:
        print(f"PORT {url.split(':')[-1].split('/')[0]}", flush=True)
        print(f"oracle world at {url} (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
