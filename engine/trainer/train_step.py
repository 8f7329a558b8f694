"""One compiled train step of a model line, on one or many devices.

Example::

    strategy = make_strategy("mirrored")        # every GPU; one CPU replica without GPUs
    with strategy.scope():
        model = compile_model(build_architecture(spec), spec)
    step = TrainStep(model, strategy, spec.output_names)
    step(batch.x, batch.y)                      # x float32 (N, H, W, C); y output -> (N,)
    step.mean_losses()                          # {"total": 0.21, "steering": 0.09, ...}

The step is Keras' own compiled train function (a `tf.function` around
`model.train_step`), so the optimizer, the per-output losses and their
distribution scaling are exactly what `fit` would do. The trainer and the
benchmark's bare baseline call the same `TrainStep`, so they time the same step.

Losses are Keras' running means: reading them with `mean_losses` resets them,
so each reading is the mean over the steps since the previous one, without a
device-to-host copy after every step.

Under `tf.distribute.MultiWorkerMirroredStrategy` (`engine/trainer/cluster.py`)
each call takes this worker's own slice of the global batch, and the step is
`model.train_step` run by the strategy in our own `tf.function`: Keras 3's
compiled train function reduces its scalar logs with `axis=0` there and fails
(tensorflow/tensorflow#72388). The losses stay Keras' own trackers, summed over
every worker when read, so reading them is a collective: every worker reads at
the same turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

StrategyName = Literal["default", "mirrored", "multi_worker"]


def make_strategy(name: StrategyName) -> tf.distribute.Strategy:
    """The tf.distribute strategy config `[trainer] strategy` names.

    "mirrored" replicates the model on every GPU and splits each batch between
    them; on a machine without GPUs it runs one replica on the CPU.
    "multi_worker" needs the cluster's addresses: `engine.trainer.cluster.join_cluster`.
    """
    if name == "multi_worker":
        raise ValueError("the multi_worker strategy comes from engine.trainer.cluster.join_cluster")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def create_training_variables(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    outputs: Sequence[str],
    frame_shape: tuple[int, int, int],
) -> None:
    """Create the optimizer's and loss trackers' variables of a compiled model (once).

    Under MultiWorkerMirroredStrategy every variable's creation is a collective
    (the chief's initial value is broadcast), so every worker must create the
    same variables in the same order: this runs before the chief loads a
    checkpoint, which would otherwise create the optimizer's alone.
    """
    x = np.zeros((1, *frame_shape), np.float32)
    targets = {name: np.zeros((1, 1), np.float32) for name in outputs}
    with strategy.scope():
        model._maybe_symbolic_build(data_batch=(x, targets, None))


class TrainStep:
    """Keras' compiled train function for `model`, fed one in-memory batch per call."""

    def __init__(
        self, model: keras.Model, strategy: tf.distribute.Strategy, outputs: Sequence[str]
    ) -> None:
        self.model = model
        self.strategy = strategy
        self.outputs = tuple(outputs)
        self.replicas = strategy.num_replicas_in_sync
        self._slice_step: tf.types.experimental.GenericFunction | None = None

    def build(self, frame_shape: tuple[int, int, int]) -> None:
        """Multi-worker: create the optimizer's and losses' variables before any step.

        Every worker must hold all of them before the chief's are copied to the
        others (`Cluster.sync_state`), and a replica context cannot create them.
        """
        create_training_variables(self.model, self.strategy, self.outputs, frame_shape)
        strategy, model = self.strategy, self.model

        @tf.function(reduce_retracing=True)
        def slice_step(data: object) -> None:
            strategy.run(model.train_step, args=(data,))

        self._slice_step = slice_step

    def train_slice(self, x: np.ndarray, y: Mapping[str, np.ndarray]) -> None:
        """Multi-worker: train this worker's slice of a global batch (every worker at once)."""
        if self._slice_step is None:
            raise RuntimeError("TrainStep.build first")
        data = (x, {name: np.reshape(y[name], (-1, 1)) for name in self.outputs})
        self._slice_step(self.strategy.experimental_distribute_values_from_function(lambda _: data))

    def __call__(self, x: np.ndarray, y: Mapping[str, np.ndarray]) -> None:
        """Train on one batch: raw 0-255 frames and one target per sample and output."""
        targets = {name: np.reshape(y[name], (-1, 1)) for name in self.outputs}
        if self.model.train_function is None:
            # train_on_batch builds the loss trackers and optimizer slots (outside any
            # tf.function, where a replica context cannot create them) and compiles the step.
            # Each replica sees the whole first batch; the summed gradient is still that batch's.
            self.model.train_on_batch(x, targets)
            return
        self.model.train_function(iter([self._per_replica(x, targets)]))

    def mean_losses(self) -> dict[str, float]:
        """Mean total and per-output loss since the last call ("total" and each output)."""
        logs = self.model.get_metrics_result()
        self.model.reset_metrics()
        total = float(logs["loss"])
        # A one-output model's loss is that output's loss; Keras reports it only as "loss".
        return {"total": total} | {
            name: float(logs[f"{name}_loss"]) if len(self.outputs) > 1 else total
            for name in self.outputs
        }

    def _per_replica(self, x: np.ndarray, targets: dict[str, np.ndarray]) -> object:
        """The batch, split into one contiguous slice per replica when there are several."""
        if self.replicas == 1:
            return (x, targets)
        x_parts = np.array_split(x, self.replicas)
        target_parts = {
            name: np.array_split(values, self.replicas) for name, values in targets.items()
        }

        def replica_slice(context: tf.distribute.InputContext) -> tuple[object, object]:
            index = context.replica_id_in_sync_group
            return x_parts[index], {name: parts[index] for name, parts in target_parts.items()}

        return self.strategy.experimental_distribute_values_from_function(replica_slice)
