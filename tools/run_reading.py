"""Reading a run folder's recommendations on one machine (pyarrow, no Spark): for the run
summary, the benchmarks and the tests.

The recommend stage keeps one row per user and variant with the whole list (docs/run-folder.md);
run folders written before that keep one row per rank. Both read the same here.
"""

from __future__ import annotations

from pathlib import Path


def recommendation_rows(recommendations: str | Path):
    """A pandas DataFrame with one row per listed item: variant, user_id, rank (1 = best),
    item_id, score."""
    import numpy as np
    import pandas as pd
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = ds.dataset(str(recommendations), format="parquet", partitioning="hive").to_table()
    if "rank" in table.column_names:
        return table.select(["variant", "user_id", "rank", "item_id", "score"]).to_pandas()
    lists = table.column("items").combine_chunks()
    parents = pc.list_parent_indices(lists).to_numpy()
    offsets = lists.offsets.to_numpy()
    entries = pc.list_flatten(lists)
    return pd.DataFrame({
        "variant": table.column("variant").to_numpy()[parents].astype(str),
        "user_id": table.column("user_id").to_numpy()[parents],
        "rank": (np.arange(len(parents)) - (offsets[parents] - offsets[0]) + 1).astype(np.int32),
        "item_id": entries.field("item_id").to_numpy(zero_copy_only=False),
        "score": entries.field("score").to_numpy(zero_copy_only=False),
    })  # fmt: skip
