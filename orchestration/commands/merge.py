"""``aloe merge``: combine databases (e.g. one per shard) into one, without duplicates.

    aloe merge db=all.db inputs=[shard_0.db,shard_1.db,shard_2.db]

Every input is checked first (a bad one changes nothing); then each is
copied in one transaction with its ids remapped. Merging an input twice
adds nothing. Prints one JSON line per input with the rows added and
matched per table. See ``aloesim.environment.store._merge`` for the keys.
"""

from __future__ import annotations

import json

from omegaconf import DictConfig

from ...core import to_settings
from ...environment.store import MergeResult, merge_databases
from .._schemas import MergeConfig

HELP = "merge databases (e.g. one per shard) into db without duplicates: aloe merge db=OUT inputs=[A,B]"


def inputs_of(cfg: DictConfig) -> list[str]:
    inputs = to_settings(cfg, MergeConfig).inputs
    return [inputs] if isinstance(inputs, str) else [str(v) for v in inputs]


def run(cfg: DictConfig) -> int:
    inputs = inputs_of(cfg)

    def report(result: MergeResult) -> None:
        print(json.dumps({"db": str(cfg.db), **result.as_dict()}))

    merge_databases(str(cfg.db), inputs, on_input=report)
    return 0
