"""The anchor networks (anchor_nets.py) as ncnn `.param` files, so that ncnn's own aarch64 code, whose device
timings ncnn publishes, can be counted in the same emulator as optkit's builds (arm_estimate.py fits the
cost model on those pairs). Weights come from ncnn's empty data reader at load (zeros), as in its benchmark.

Only what the anchor networks use is written: Conv (dense and depthwise, with a following Relu or
Clip(0, 6) folded in as ncnn does), Add, GlobalAveragePool, Flatten and Gemm; anything else is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from optkit.core.errors import OptionError
from optkit.graph.index import GraphIndex, attr

MAGIC = 7767517


def to_ncnn_param(model: onnx.ModelProto) -> tuple[str, str, list[str]]:
    """(param text, input blob, output blobs) of a model built by anchor_nets.py."""
    index = GraphIndex(model.graph)
    shapes = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    (image,) = shapes
    _, c, h, w = shapes[image]
    layers: list[tuple[str, str, list[str], list[str], str]] = [("Input", image, [], [image], f"0={w} 1={h} 2={c}")]
    folded: dict[str, str] = {}           # activation output -> the conv output it replaces
    for node in model.graph.node:
        if node.op_type in ("Relu", "Clip"):
            continue                      # folded into the conv before it
        inputs = [folded.get(i, i) for i in node.input if i and index.constant(i) is None]
        out = node.output[0]
        if node.op_type == "Conv":
            weights = index.constant(node.input[1])
            consumers = index.consumers.get(out, [])
            act, params = 0, ""
            if len(consumers) == 1 and consumers[0].op_type in ("Relu", "Clip"):
                act_node = consumers[0]
                if act_node.op_type == "Relu":
                    act = 1
                else:
                    low, high = (float(index.constant(n)) for n in act_node.input[1:3])
                    act, params = 3, f" 10=2,{low:g},{high:g}"
                folded[act_node.output[0]] = out
            group = attr(node, "group", 1)
            k = weights.shape[-1]
            stride, pad, dilation = attr(node, "strides")[0], attr(node, "pads")[0], attr(node, "dilations", [1])[0]
            kind = "ConvolutionDepthWise" if group > 1 else "Convolution"
            text = (f"0={weights.shape[0]} 1={k} 2={dilation} 3={stride} 4={pad} 5={int(len(node.input) > 2)} "
                    f"6={weights.size}" + (f" 7={group}" if group > 1 else "") + f" 9={act}" + params)
            layers.append((kind, node.name, inputs, [out], text))
        elif node.op_type == "Add":
            layers.append(("BinaryOp", node.name, inputs, [out], "0=0"))
        elif node.op_type == "GlobalAveragePool":
            layers.append(("Pooling", node.name, inputs, [out], "0=1 4=1"))
        elif node.op_type == "Flatten":
            layers.append(("Flatten", node.name, inputs, [out], ""))
        elif node.op_type == "Gemm":
            weights = index.constant(node.input[1])
            layers.append(("InnerProduct", node.name, inputs, [out], f"0={weights.shape[0]} 1=1 2={weights.size}"))
        else:
            raise OptionError(f"ncnn anchor: op {node.op_type} of node '{node.name}' is not written")
    outputs = [folded.get(o.name, o.name) for o in model.graph.output]
    return _with_splits(layers), image, outputs


def _with_splits(layers) -> str:
    """ncnn wants one consumer per blob: a blob read by several layers goes through a Split."""
    readers: dict[str, int] = {}
    for _, _, inputs, _, _ in layers:
        for blob in inputs:
            readers[blob] = readers.get(blob, 0) + 1
    out, renamed = [], {}
    for kind, name, inputs, outputs, params in layers:
        inputs = [renamed.setdefault(b, []).pop(0) if renamed.get(b) else b for b in inputs]
        out.append((kind, name, inputs, outputs, params))
        for blob in outputs:
            if readers.get(blob, 0) > 1:
                copies = [f"{blob}_split{k}" for k in range(readers[blob])]
                out.append(("Split", f"{blob}_split", [blob], copies, ""))
                renamed[blob] = list(copies)
    blobs = {b for _, _, _, outputs, _ in out for b in outputs}
    lines = [str(MAGIC), f"{len(out)} {len(blobs)}"]
    for kind, name, inputs, outputs, params in out:
        lines.append(f"{kind:<24} {name:<24} {len(inputs)} {len(outputs)} {' '.join(inputs + outputs)} {params}".rstrip())
    return "\n".join(lines) + "\n"


def write_param(model: onnx.ModelProto, path: Path) -> tuple[Path, np.ndarray]:
    """Write PATH (the param) and PATH.json (its input and output blobs, for count_runner.py); return the path
    and an input for it (C x H x W zeros: the work of a convolution does not depend on the values)."""
    text, image, outputs = to_ncnn_param(model)
    path.write_text(text)
    Path(f"{path}.json").write_text(json.dumps({"input": image, "outputs": outputs}))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return path, np.zeros(dims[1:], np.float32)
