"""The preference check's verdict: typed in memory, the same JSON as before in ``nodes.judge``."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from aloesim.environment import PreferenceCheck


@pytest.mark.parametrize(("first", "second", "agrees", "disagrees"), [
    (True, True, True, False), (False, False, False, True), (True, False, False, False), (False, True, False, False),
])
def test_agreement_is_read_off_both_orders(first: bool, second: bool, agrees: bool, disagrees: bool) -> None:
    v = PreferenceCheck(preferred_first=first, preferred_second=second)
    assert (v.agrees, v.disagrees) == (agrees, disagrees)


def test_the_stored_json_keeps_its_keys_and_order_and_says_swapped_only_when_it_was() -> None:
    v = PreferenceCheck(preferred_first=False, preferred_second=False)
    # the form nodes.judge has always had: the four keys in this order, no 'swapped' unless swapped
    assert json.dumps(v.as_dict()) == ('{"preferred_first": false, "preferred_second": false,'
                                       ' "agrees": false, "disagrees": true}')
    assert json.dumps(replace(v, swapped=True).as_dict()) == (
        '{"preferred_first": false, "preferred_second": false, "agrees": false, "disagrees": true, "swapped": true}')


@pytest.mark.parametrize("verdict", [PreferenceCheck(True, False), PreferenceCheck(False, False, swapped=True),
                                     PreferenceCheck(True, True)])
def test_a_stored_verdict_reads_back_equal(verdict: PreferenceCheck) -> None:
    assert PreferenceCheck.from_dict(json.loads(json.dumps(verdict.as_dict()))) == verdict
