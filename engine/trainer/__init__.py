"""The trainer: buffers to batches to a compiled step, checkpoints, TensorBoard, its node."""
