"""Small read/write helpers over onnx GraphProto that passes share."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper


class GraphIndex:
    """Producers, consumers and constants of a graph, built once and kept in step by the helpers."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.initializers = {t.name: t for t in graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for o in node.output:
                if o:
                    self.producer[o] = node
            for i in node.input:
                if i:
                    self.consumers[i].append(node)
            for name in subgraph_inputs(node):
                self.consumers[name].append(node)
        self.graph_outputs = {o.name for o in graph.output}
        self._names = {n.name for n in graph.node} | set(self.producer) | set(self.initializers) | {
            i.name for i in graph.input}

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant-node output, else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def fresh_name(self, base: str) -> str:
        name, k = base, 0
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def set_initializer(self, name: str, value: np.ndarray) -> None:
        """Add or replace an initializer."""
        tensor = numpy_helper.from_array(value, name)
        if name in self.initializers:
            self.initializers[name].CopyFrom(tensor)
        else:
            self.graph.initializer.append(tensor)
            self.initializers[name] = self.graph.initializer[-1]
        self._names.add(name)

    def uses(self, name: str) -> int:
        return len(self.consumers.get(name, [])) + (1 if name in self.graph_outputs else 0)


def subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read from the enclosing scope."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
        for g in graphs:
            local = {i.name for i in g.input} | {t.name for t in g.initializer}
            for n in g.node:
                local.update(n.output)
            for n in g.node:
                names.update(i for i in n.input if i and i not in local)
                names.update(subgraph_inputs(n) - local)
    return names


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def insert_after_producers(graph: onnx.GraphProto, after: dict[str, list[onnx.NodeProto]],
                           head: list[onnx.NodeProto] | None = None) -> None:
    """Reorder `graph.node` so that `head` comes first, then each tensor's nodes of `after` right after the
    node producing that tensor (first, for a graph input or initializer): topological order kept when the
    new nodes read only that tensor and constants."""
    produced = {out for node in graph.node for out in node.output}
    pending = dict(after)
    ordered = list(head or []) + [n for name in after if name not in produced for n in pending.pop(name)]
    for node in graph.node:
        ordered.append(node)
        for out in node.output:
            ordered.extend(pending.pop(out, []))
    del graph.node[:]
    graph.node.extend(ordered)


def remove_unused_initializers(graph: onnx.GraphProto) -> int:
    """Drop initializers nothing reads (and their graph-input entries, in old-IR models)."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for n in graph.node:
        used |= subgraph_inputs(n)
    dead = {t.name for t in graph.initializer if t.name not in used}
    if dead:
        keep = [t for t in graph.initializer if t.name not in dead]
        del graph.initializer[:]
        graph.initializer.extend(keep)
        inputs = [i for i in graph.input if i.name not in dead]
        del graph.input[:]
        graph.input.extend(inputs)
    return len(dead)


def static_shapes(model: onnx.ModelProto, data_prop: bool = False) -> dict[str, tuple[int, ...]]:
    """Fully known shapes of graph inputs, intermediates, outputs and initializers, from ONNX shape inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=data_prop)
    except Exception:  # statistics and folding degrade to what is already annotated
        inferred = model
    shapes = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[vi.name] = tuple(d.dim_value for d in tt.shape.dim)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes
