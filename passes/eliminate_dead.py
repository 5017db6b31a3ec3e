"""`eliminate-dead`: remove nodes, initializers and value_info that no graph output depends on."""

from __future__ import annotations

from optkit.graph.index import remove_unused_initializers, subgraph_inputs
from optkit.pass_infra.contract import Pass, PassContext, PassResult


class EliminateDead(Pass):
    name = "eliminate-dead"
    exact = True
    summary = "remove nodes and initializers no graph output depends on"

    def run(self, model, ctx: PassContext) -> PassResult:
        graph = model.graph
        live = {o.name for o in graph.output}
        keep = []
        for node in reversed(graph.node):
            if any(o in live for o in node.output if o):
                keep.append(node)
                live.update(i for i in node.input if i)
                live |= subgraph_inputs(node)
        keep.reverse()
        removed_nodes = len(graph.node) - len(keep)
        if removed_nodes:
            del graph.node[:]
            graph.node.extend(keep)
        removed_inits = remove_unused_initializers(graph)
        produced = {o for n in graph.node for o in n.output}
        value_info = [vi for vi in graph.value_info if vi.name in produced]
        removed_vi = len(graph.value_info) - len(value_info)
        if removed_vi:
            del graph.value_info[:]
            graph.value_info.extend(value_info)
        changed = bool(removed_nodes or removed_inits or removed_vi)
        return PassResult(model, changed, {"nodes_removed": removed_nodes, "initializers_removed": removed_inits})
