"""The paper's ALOE case set from files in the published format: 20 profiles x
the FIRST 5 of the 7 personalities, profile-major, described with the files'
SHA-256 (issue 14.1)."""

from __future__ import annotations

import hashlib

from aloesim.evaluation import case_set_from_files, cases_from_files, first_cases
from tests.support.aloe_files import personality, profile, write_published


def test_the_aloe_set_is_each_profile_with_the_first_five_personalities(tmp_path) -> None:
    p, q = write_published(tmp_path)
    chosen = case_set_from_files(p, q, name="ALOE", personalities_per_profile=5)
    assert len(chosen.cases) == 100
    assert [(c.index, c.profile, c.personality) for c in chosen.cases] == [
        (i * 5 + j, profile(i), personality(j)) for i in range(20) for j in range(5)]
    info = chosen.info
    assert info["name"] == "ALOE" and info["source"] == "files" and info["cases"] == 100
    assert info["profiles"] == {"file": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "items": 20,
                                "used": 20}
    assert info["personalities"]["items"] == 7 and info["personalities"]["used"] == 5
    assert info["personalities"]["sha256"] == hashlib.sha256(q.read_bytes()).hexdigest()


def test_a_line_with_two_values_is_two_profiles_as_on_import(tmp_path) -> None:
    p, q = write_published(tmp_path, doubled_line=6)
    assert len(p.read_text().splitlines()) == 19  # the file has 19 lines ...
    chosen = case_set_from_files(p, q, personalities_per_profile=5)
    assert chosen.info["profiles"]["items"] == 20  # ... and 20 profiles
    assert chosen.cases[25].profile == profile(5) and chosen.cases[30].profile == profile(6)


def test_without_a_limit_every_pair_is_a_case_as_before(tmp_path) -> None:
    p, q = write_published(tmp_path)
    every = case_set_from_files(p, q)
    assert len(every.cases) == 140 and every.info["name"] == "files"
    assert [(c.profile, c.personality) for c in every.cases] == [(c.profile, c.personality)
                                                                  for c in cases_from_files(p, q)]
    # benchmark.cases=100 of the full product is NOT the paper's set: a profile-major prefix
    prefix = first_cases(every, 100)
    aloe = case_set_from_files(p, q, personalities_per_profile=5)
    assert prefix.info["of"] == 140 and prefix.info["fingerprint"] != aloe.info["fingerprint"]
    assert {c.personality for c in prefix.cases} == {personality(j) for j in range(7)}
