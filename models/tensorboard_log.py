"""Training curves as real TensorBoard event files, one directory per model version.

Example::

    with LossLog(tensorboard_dir("data", "model_0000_demo_v1")) as curves:
        curves.write(batch=120, losses={"total": 0.31, "steering": 0.12,
                                        "throttle_brake": 0.19}, samples_per_s=1400.0)

    tensorboard --logdir data/tensorboard     # every version side by side

Tags are `loss/total`, `loss/<output>` and `samples_per_s`, stepped by the
version's batch counter, so a resumed version continues its curves where its
checkpoint left them (the seed page's "TensorBoard logs" per version).

A trainer on another machine writes them there; its checkpoint shipper gives
the hub a copy of each event file that grew (`models.transfer.send_curves`),
so the streaming PC's model pages draw the same curves.

The points go through TensorBoard's own writer (`tensorboard.summary.Writer`),
not `tf.summary`: the same event files (a float32 tensor per point, the
"scalars" plugin), but no TensorFlow op per point. With `tf.summary.scalar`
every point turned Python numbers (step and value) into eager tensors, and
TensorFlow 2.21 keeps ~550 bytes of every Python scalar it converts, for good:
~2 MB an hour of a streamed trainer's heap (BENCHMARKS.md, "soak F").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

# TensorBoard's event file names: the only names the hub takes from a remote trainer.
EVENT_FILE = re.compile(r"^events\.out\.tfevents\.[A-Za-z0-9._-]{1,200}$")


def tensorboard_dir(data_dir: str | Path, version: str) -> Path:
    """Where a version's event files go: `<data_dir>/tensorboard/<version>/`."""
    return Path(data_dir) / "tensorboard" / version


class LossLog:
    """A new event file for one version's losses and training speed; one thread writes it."""

    def __init__(self, directory: str | Path) -> None:
        from tensorboard.summary import Writer

        self.directory = Path(directory)
        self._writer = Writer(str(self.directory))

    def __enter__(self) -> LossLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(
        self, batch: int, losses: Mapping[str, float], samples_per_s: float | None = None
    ) -> None:
        """Add one point per loss ("total" and each output) at batch counter `batch`."""
        for name, value in losses.items():
            self._writer.add_scalar(f"loss/{name}", value, batch)
        if samples_per_s is not None:
            self._writer.add_scalar("samples_per_s", samples_per_s, batch)

    def flush(self) -> None:
        """Put what was written on disk, so TensorBoard shows it now."""
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()
