"""Fitting examples to max_length: oldest turns go first, the reply always stays."""

from __future__ import annotations

from aloesim.training import fit_rows


class WordTokenizer:
    """One token per word plus two per message (a stand-in with the chat-template call TRL uses)."""

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        n = sum(len(m["content"].split()) + 2 for m in messages) + (2 if add_generation_prompt else 0)
        return {"input_ids": list(range(n))}


def U(c):
    return {"role": "user", "content": c}


def A(c):
    return {"role": "assistant", "content": c}


def test_short_rows_untouched():
    rows = [{"prompt": [U("a b")], "completion": [A("c")]}]
    kept, stats = fit_rows(rows, WordTokenizer(), 100)
    assert kept == rows and stats.as_dict() == {"examples": 1, "trimmed": 0, "dropped": 0}


def test_oldest_pairs_dropped_first():
    prompt = [U("one " * 10), A("two " * 10), U("three " * 10), A("four " * 10), U("five")]
    rows = [{"prompt": prompt, "completion": [A("six six")]}]
    # full = 10+10+10+10+1+2 words + 6*2 = 55 tokens; without the first pair 35; without two pairs 15
    kept, stats = fit_rows(rows, WordTokenizer(), 40)
    assert kept[0]["prompt"] == prompt[2:] and kept[0]["completion"] == [A("six six")]
    assert stats.trimmed == 1
    kept, _ = fit_rows(rows, WordTokenizer(), 20)
    assert kept[0]["prompt"] == [U("five")]


def test_system_message_kept_and_dpo_uses_longer_answer():
    prompt = [{"role": "system", "content": "sys"}, U("old " * 20), A("old " * 20), U("now")]
    rows = [{"prompt": prompt, "chosen": [A("short")], "rejected": [A("long " * 30)]}]
    kept, stats = fit_rows(rows, WordTokenizer(), 60)
    assert kept[0]["prompt"] == [prompt[0], U("now")]
    assert stats.trimmed == 1


def test_no_room_for_reply_is_dropped():
    rows = [{"prompt": [U("w " * 50)], "completion": [A("x")]}, {"prompt": [U("ok")], "completion": [A("x")]}]
    kept, stats = fit_rows(rows, WordTokenizer(), 30)
    assert [r["prompt"][0]["content"] for r in kept] == ["ok"]
    assert stats.dropped == 1


def test_trim_off_keeps_history():
    prompt = [U("one " * 10), A("two " * 10), U("three")]
    kept, stats = fit_rows([{"prompt": prompt, "completion": [A("x")]}], WordTokenizer(), 30, trim=False)
    assert kept[0]["prompt"] == prompt and stats.trimmed == 0
