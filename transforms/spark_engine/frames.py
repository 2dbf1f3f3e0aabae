"""Materialising intermediate frames, which keeps Spark's plans from growing with each step.

Linking reuses frames many times (the pool of each resolve round is derived from the last one),
and a logical plan repeats a reused frame in full wherever it appears: without cutting the
lineage the plan grows exponentially with the rounds. A checkpoint cuts it. With a checkpoint
directory (`sparkContext.setCheckpointDir`, on a cluster a reliable file system) the frames are
checkpointed there and survive the loss of an executor; without one they are local checkpoints
on the executors, which is what a single machine needs.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def materialise(frame: DataFrame) -> DataFrame:
    """Compute `frame` now and return it with its lineage cut."""
    if frame.sparkSession.sparkContext.getCheckpointDir() is not None:
        return frame.checkpoint(eager=True)
    return frame.localCheckpoint(eager=True)


def fresh(frame: DataFrame) -> DataFrame:
    """`frame` with new column identities, to join it back to the raw rows it came from.

    A checkpoint keeps the column identities of its lineage, so the narrow frames and the raw
    scan share `_file` and `_row`; Spark fails to tell them apart in such a join when the scan
    carries file metadata columns (`_metadata.row_index`).
    """
    return frame.select(*[F.col(f"`{c}`").alias(c) for c in frame.columns])
