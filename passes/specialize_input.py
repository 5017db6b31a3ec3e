"""`specialize-input`: fix input dimensions and fold everything that becomes constant.

Once input sizes are fixed, Shape → Gather → Concat chains that compute Resize sizes or Reshape
targets are constant. This pass sets the dims, infers shapes, replaces Shape (and Size) of
statically shaped tensors by constants and folds every node whose inputs are all constant, until
nothing changes. Resize scales/sizes and Reshape targets end up as initializers, which is what
TVM and mobile runtimes want.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

from optkit.core.errors import OptionError
from optkit.graph.index import GraphIndex, attr, remove_unused_initializers, static_shapes
from optkit.graph.numerics import input_specs
from optkit.graph.shapes import check_shapes_against_model, parse_shape_spec
from optkit.pass_infra.contract import Pass, PassContext, PassOption, PassResult

# Never folded: random ops, ops with subgraphs, and ops whose results depend on more than inputs.
_NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                 "Bernoulli", "If", "Loop", "Scan", "SequenceMap", "Dropout"}
# Folded results larger than this stay computed at run time (folding would bloat the file).
_MAX_FOLDED_ELEMENTS = 1 << 20


def _shape_node_value(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    if node.op_type == "Size":
        return np.array(int(np.prod(shape)), dtype=np.int64)
    rank = len(shape)
    start, end = attr(node, "start", 0), attr(node, "end", rank)
    return np.array(shape[slice(start, end)], dtype=np.int64)


def fold_constants(model: onnx.ModelProto) -> int:
    """Fold Shape/Size of static tensors and every node with all-constant inputs. Returns nodes folded."""
    graph = model.graph
    total = 0
    while True:
        shapes = static_shapes(model, data_prop=True)
        idx = GraphIndex(graph)
        folded: dict[int, list[np.ndarray]] = {}
        known: dict[str, np.ndarray] = {}

        for node in graph.node:
            if node.op_type in _NOT_FOLDABLE or node.op_type == "Constant" or node.domain not in ("", "ai.onnx"):
                continue
            if any(o in idx.graph_outputs for o in node.output):
                continue  # a graph output stays computed: runtimes do not return initializers
            if node.op_type in ("Shape", "Size") and node.input[0] in shapes:
                outs = [_shape_node_value(node, shapes[node.input[0]])]
            else:
                ins = [(known[i] if i in known else idx.constant(i)) if i else None for i in node.input]
                if not node.input or any(v is None for i, v in zip(node.input, ins) if i):
                    continue
                outs = _evaluate(node, ins, model)
                if outs is None or any(o.size > _MAX_FOLDED_ELEMENTS for o in outs):
                    continue
            folded[id(node)] = outs
            known.update(zip(node.output, outs))
        if not folded:
            return total
        keep = []
        for node in graph.node:
            if id(node) in folded:
                for name, val in zip(node.output, folded[id(node)]):
                    if name:
                        idx.set_initializer(name, np.asarray(val))
            else:
                keep.append(node)
        del graph.node[:]
        graph.node.extend(keep)
        total += len(folded)


def _evaluate(node: onnx.NodeProto, inputs: list, model: onnx.ModelProto) -> list[np.ndarray] | None:
    names = [f"in{k}" if i else "" for k, i in enumerate(node.input)]
    clone = onnx.helper.make_node(node.op_type, names, [f"out{k}" for k in range(len(node.output))],
                                  domain=node.domain)
    clone.attribute.extend(node.attribute)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    graph = onnx.helper.make_graph(
        [clone], "fold",
        [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
         for n, v in zip(names, inputs) if n],
        [onnx.helper.make_tensor_value_info(f"out{k}", onnx.TensorProto.UNDEFINED, None)
         for k in range(len(node.output))])
    try:
        ref = ReferenceEvaluator(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)]))
        outs = ref.run(None, {n: v for n, v in zip(names, inputs) if n})
    except Exception:  # an op the reference evaluator cannot run simply stays in the graph
        return None
    return [np.asarray(o) for o in outs]


class SpecializeInput(Pass):
    name = "specialize-input"
    exact = True
    summary = "fix input dims (shape=x:1x3x240x320), propagate shapes, fold shape arithmetic"
    options = {
        "shape": PassOption(str, "", "NAME:D1xD2x... for each input to fix, several joined by ';'. "
                                     "Empty: keep the model's dims and only fold"),
    }

    def run(self, model, ctx: PassContext) -> PassResult:
        shapes = parse_shape_spec(self.config["shape"]) if self.config["shape"] else {}
        try:
            check_shapes_against_model(shapes, model)
        except OptionError as exc:
            raise OptionError(f"pass 'specialize-input': {exc}") from None
        changed_inputs = 0
        for vi in model.graph.input:
            if vi.name not in shapes:
                continue
            dims = vi.type.tensor_type.shape.dim
            if not dims:
                for _ in shapes[vi.name]:
                    vi.type.tensor_type.shape.dim.add()
            for d, want in zip(vi.type.tensor_type.shape.dim, shapes[vi.name]):
                if not (d.HasField("dim_value") and d.dim_value == want):
                    d.Clear()
                    d.dim_value = want
                    changed_inputs += 1
        still_dynamic = [s.name for s in input_specs(model) if any(not isinstance(d, int) or d <= 0
                                                                    for d in s.shape)]
        folded = fold_constants(model)
        remove_unused_initializers(model.graph)
        # Re-derive every intermediate and output shape from the now-fixed inputs.
        del model.graph.value_info[:]
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        for out, inf in zip(model.graph.output, inferred.graph.output):
            if inf.type.tensor_type.HasField("shape"):
                out.type.CopyFrom(inf.type)
        model.graph.value_info.extend(inferred.graph.value_info)
        stats = {"dims_fixed": changed_inputs, "nodes_folded": folded}
        if still_dynamic:
            stats["dynamic_inputs_left"] = still_dynamic
        return PassResult(model, bool(changed_inputs or folded), stats)

