"""Issue 18's limit: what int8 compute these two vCPUs give through OpenVINO, against what
model_0003_xception at 270x480 needs for 30 predictions/s.

1. MACs of one Xception pass at 270x480 (from the Keras layers: convolutions and dense).
2. A synthetic stack of 1x1 convolutions (the layers that take 35 of 44 ms in the profile),
   quantized by NNCF like the driver's int8, compiled as the driver compiles it with 2 in
   flight (THROUGHPUT, 2 streams, 2 threads) and with 1 (LATENCY, 2 threads): GMAC/s.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def xception_macs(height=270, width=480):
    import msgspec

    from models.build import build_architecture
    from models.spec import load_spec

    spec = load_spec("model_0003_xception")
    spec = msgspec.structs.replace(
        spec, input=msgspec.structs.replace(spec.input, height=height, width=width)
    )
    model = build_architecture(spec)
    parts = {"pointwise/full conv": 0, "depthwise": 0, "dense": 0}

    def walk(layer):
        if hasattr(layer, "layers") and layer.layers:
            for sub in layer.layers:
                walk(sub)
            return
        name = type(layer).__name__
        if name in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
            out = layer.output.shape  # (None, H, W, C)
            inp = layer.input.shape
            h, w, cout = out[1], out[2], out[3]
            cin = inp[3]
            kh, kw = layer.kernel_size
            if name == "Conv2D":
                parts["pointwise/full conv"] += h * w * kh * kw * cin * cout
            elif name == "SeparableConv2D":
                parts["depthwise"] += h * w * kh * kw * cin * (layer.depth_multiplier)
                parts["pointwise/full conv"] += h * w * cin * layer.depth_multiplier * cout
            else:
                parts["depthwise"] += h * w * kh * kw * cin * layer.depth_multiplier
        elif name == "Dense":
            parts["dense"] += int(np.prod(layer.input.shape[1:])) * layer.units

    walk(model)
    return parts


def stack(channels, h, w, layers):
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([1, channels, h, w], np.float32, name="x")
    y = x
    for _ in range(layers):
        weights = ops.constant(rng.normal(0, 0.05, (channels, channels, 1, 1)).astype(np.float32))
        y = ops.relu(ops.convolution(y, weights, [1, 1], [0, 0], [0, 0], [1, 1]))
    return ov.Model([y], [x], "pointwise_stack")


def rate(model, shape, mode, seconds):
    import openvino as ov

    core = ov.Core()
    if mode == "2 in flight":
        cfg = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2", "INFERENCE_NUM_THREADS": "2"}
    else:
        cfg = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": "2"}
    compiled = core.compile_model(model, "CPU", cfg)
    frame = np.random.default_rng(1).uniform(0, 1, shape).astype(np.float32)
    queue = ov.AsyncInferQueue(compiled, 2 if mode == "2 in flight" else 1)
    done = [0]
    queue.set_callback(lambda request, _: done.__setitem__(0, done[0] + 1))
    for _ in range(4):
        queue.start_async({0: frame})
    queue.wait_all()
    done[0] = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        queue.start_async({0: frame})
    queue.wait_all()
    return done[0] / (time.perf_counter() - start)


def main():
    import nncf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", nargs="?", type=float, default=5.0, help="per measurement")
    seconds = parser.parse_args().seconds
    if not 0.5 <= seconds <= 600:
        parser.error(f"seconds {seconds:g} is not accepted; use 0.5 to 600")
    parts = xception_macs()
    total = sum(parts.values())
    print(
        "Xception 270x480, MACs per pass: "
        + ", ".join(f"{k} {v / 1e9:.2f} G" for k, v in parts.items())
        + f"; total {total / 1e9:.2f} G"
    )
    print(f"  30 PPS needs {30 * total / 1e9:.0f} GMAC/s in the pass alone")
    for channels, h, w, layers in ((728, 17, 30, 16), (256, 68, 120, 8), (2048, 9, 15, 8)):
        model = stack(channels, h, w, layers)
        macs = layers * h * w * channels * channels
        data = nncf.Dataset(
            [
                np.random.default_rng(i).uniform(0, 1, (1, channels, h, w)).astype(np.float32)
                for i in range(8)
            ]
        )
        int8 = nncf.quantize(model, data, subset_size=8)
        for label, m in (("f32", model), ("int8", int8)):
            for mode in ("2 in flight", "1 in flight"):
                r = rate(m, (1, channels, h, w), mode, seconds)
                print(
                    f"  1x1 stack {channels}ch {h}x{w} x{layers} ({macs / 1e9:.2f} GMAC) "
                    f"{label:4s} {mode}: {r:7.1f}/s = {r * macs / 1e9:6.0f} GMAC/s"
                )


if __name__ == "__main__":
    main()
