"""Finding the feed-forward blocks that the int8 graph keeps fp32, by the weights' shapes alone (no model needed)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from synthner_shared.ner.onnx import feed_forward_matmuls


def chain(shapes: list[tuple[int, int]]) -> onnx.ModelProto:
    """A graph of MatMuls with weights of these shapes, one after another (names ``m0``, ``m1``, ...)."""
    nodes, weights = [], []
    current = "x"
    for i, shape in enumerate(shapes):
        weights.append(numpy_helper.from_array(np.zeros(shape, dtype=np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"y{i}"], name=f"m{i}"))
        current = f"y{i}"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", shapes[0][0]])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, ["batch", shapes[-1][1]])],
        weights,
    )
    return helper.make_model(graph)


def encoder(layers: int, hidden: int = 8, inner: int = 32, labels: int = 3) -> list[tuple[int, int]]:
    attention = [(hidden, hidden)] * 4  # query, key, value, output
    return [
        *[shape for _ in range(layers) for shape in (*attention, (hidden, inner), (inner, hidden))],
        (hidden, labels),
    ]


def test_each_layer_s_up_and_down_projection_in_order() -> None:
    # per layer: m(6i)..m(6i+3) attention, m(6i+4) up, m(6i+5) down; then the classifier
    assert feed_forward_matmuls(chain(encoder(3))) == [("m4", "m5"), ("m10", "m11"), ("m16", "m17")]


def test_the_classifier_and_a_down_then_up_pair_are_not_feed_forward_blocks() -> None:
    # two feed-forward blocks back to back: the (down, next up) pair between them is not a block
    shapes = [(8, 32), (32, 8), (8, 32), (32, 8), (8, 32)]  # the last up projection has no down projection
    assert feed_forward_matmuls(chain(shapes)) == [("m0", "m1"), ("m2", "m3")]
    assert feed_forward_matmuls(chain([(8, 8), (8, 3)])) == []
    assert feed_forward_matmuls(chain([(8, 3), (3, 8)])) == []  # a bottleneck narrows: not a feed-forward block
