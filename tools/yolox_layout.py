"""Give a YOLOv8/YOLO11 raw head [N, 4+C, A] the YOLOv5/YOLOX layout [N, A, 5+C] (cx, cy, w, h,
objectness, class scores conditional on an object), with the same boxes and the same detections:
objectness = the best class score, class scores = scores / objectness. No YOLOv5/YOLOX export is in
the corpus; this gives one with trained weights (docs/DETECTORS.md):

    python tools/yolox_layout.py coco_yolo11n.onnx coco_yolox_layout.onnx
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def yolox_layout(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    out = g.output[0]
    dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    classes = dims[1] - 4
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    g.initializer.extend([numpy_helper.from_array(np.array([4, classes], np.int64), "yx_split"),
                          numpy_helper.from_array(np.array(1e-6, np.float32), "yx_eps")])
    nodes = [helper.make_node("Split", [out.name, "yx_split"], ["yx_boxes", "yx_scores"], axis=1, name="yx_split")]
    if opset >= 18:
        g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), "yx_axes"))
        nodes.append(helper.make_node("ReduceMax", ["yx_scores", "yx_axes"], ["yx_obj"], keepdims=1, name="yx_obj"))
    else:
        nodes.append(helper.make_node("ReduceMax", ["yx_scores"], ["yx_obj"], axes=[1], keepdims=1, name="yx_obj"))
    nodes += [helper.make_node("Max", ["yx_obj", "yx_eps"], ["yx_den"], name="yx_den"),
              helper.make_node("Div", ["yx_scores", "yx_den"], ["yx_cls"], name="yx_cls"),
              helper.make_node("Concat", ["yx_boxes", "yx_obj", "yx_cls"], ["yx_cat"], axis=1, name="yx_cat"),
              helper.make_node("Transpose", ["yx_cat"], ["output"], perm=[0, 2, 1], name="yx_t")]
    g.node.extend(nodes)
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("output", TensorProto.FLOAT, [dims[0], dims[2], 5 + classes]))
    onnx.checker.check_model(model)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("out")
    args = ap.parse_args()
    onnx.save(yolox_layout(onnx.load(args.model)), args.out)


if __name__ == "__main__":
    main()
