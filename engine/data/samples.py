"""Samples and sample sets, as the data path names them: declared once in `engine.core.samples`.

Example::

    from engine.data.samples import Sample, SampleSet
    SampleSet(output="steering", samples=(sample, ...))   # one sample per steering bin

They live in the foundation because wire messages carry them too; storage,
buffers and batches import them from here or from there alike.
"""

from __future__ import annotations

from engine.core.samples import Sample, SampleSet

__all__ = ["Sample", "SampleSet"]
