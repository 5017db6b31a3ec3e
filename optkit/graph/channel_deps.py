"""Which channels must be pruned together: a dependency analysis over an ONNX graph (NCHW, axis 1).

Every Conv with group=1 *produces* a fresh channel group. Channels then flow through ops:
- pass-through ops (activations, BatchNormalization, Resize, pooling, depthwise Conv, per-channel
  affine with constants) keep the channel list of their input;
- Concat on axis 1 joins channel lists end to end (this is where index offsets come from);
- Pad that appends zero channels (converter graphs widen a residual this way: BlazePalm's
  `channel_padding`) extends the list with a group of zero channels, which has no producer;
- Add/Sub/Mul/Div/Max/Min of two channel tensors (a residual) couple them channel by channel: the same
  channels must be removed on both sides. Where one side's groups do not line up with the other's (a
  conv's 64 outputs added to 32 stream channels and 32 padded zeros), groups are split at the boundaries
  until they do, and coupled groups are merged (connected components, networkx);
- a Conv with group=1 or a ConvTranspose *consumes* the list: its input-channel axis is sliced.
A group is refused (never pruned) when one of its channels reaches a graph output, or an op whose
channel semantics are not modelled here (Reshape, Transpose, Split, Softmax on channels, grouped conv
that is not depthwise, ...); the reason names the node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np
import onnx

from optkit.graph.index import GraphIndex, attr

PASS_THROUGH = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
                "Softplus", "Identity", "Dropout", "Resize", "Upsample", "MaxPool", "AveragePool", "Neg", "Abs",
                "BatchNormalization", "PRelu", "Cast", "GlobalAveragePool", "GlobalMaxPool"}
BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min"}
LAYOUT_OPS = {"Transpose", "Reshape", "Concat", "Flatten", "Squeeze", "Unsqueeze", "Identity"}

Channel = tuple[int, int]  # (group id, channel index within the group's producers)


@dataclass
class ChannelGroup:
    gid: int
    size: int
    producers: list[str] = field(default_factory=list)   # Conv nodes some of whose output channels these are
    followers: list[str] = field(default_factory=list)   # nodes whose per-channel params follow the group
    refused: str = ""                                    # why it cannot be pruned ("" = prunable)


@dataclass
class Dependencies:
    groups: dict[int, ChannelGroup]
    channels: dict[str, list[Channel]]     # tensor → channel list (axis 1)
    consumers: list[str]                   # Conv/ConvTranspose nodes whose input channels are sliced
    depthwise: set[str] = field(default_factory=set)   # depthwise Convs: channels pass through them
    channel_pads: set[str] = field(default_factory=set)  # Pads appending zero channels (their amount shrinks)

    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups.values() if not g.refused]


def analyze(model: onnx.ModelProto) -> Dependencies:
    idx = GraphIndex(model.graph)
    groups: dict[int, ChannelGroup] = {}
    channels: dict[str, list[Channel]] = {}
    couple = nx.Graph()
    consumers: list[str] = []
    depthwise: set[str] = set()
    channel_pads: set[str] = set()
    refusals: dict[int, str] = {}

    def new_group(size: int, producer: str) -> list[Channel]:
        gid = max(groups, default=-1) + 1
        groups[gid] = ChannelGroup(gid, size, [producer])
        couple.add_node(gid)
        return [(gid, i) for i in range(size)]

    def refuse(chs: list[Channel], why: str) -> None:
        for g in {g for g, _ in chs}:
            refusals.setdefault(g, why)

    def reached_output(node: onnx.NodeProto) -> str | None:
        """The graph output a node's result reaches through layout ops only (a detection head's Transpose,
        Reshape and Concat): such channels are the output's own entries and can never be sliced."""
        frontier, seen = list(node.output), set()
        while frontier:
            tensor = frontier.pop()
            if tensor in idx.graph_outputs:
                return tensor
            seen.add(tensor)
            for reader in idx.consumers.get(tensor, []):
                if reader.op_type in LAYOUT_OPS:
                    frontier += [o for o in reader.output if o not in seen]
        return None

    def split(g: int, k: int) -> None:
        """Split group g (and every group coupled with it) so that its channels from k on form new groups."""
        component = list(nx.node_connected_component(couple, g))
        tail = {}
        for member in component:
            old = groups[member]
            tail[member] = new = max(groups) + 1
            groups[new] = ChannelGroup(new, old.size - k, list(old.producers), list(old.followers))
            old.size = k
            couple.add_node(new)
            if member in refusals:
                refusals[new] = refusals[member]
        for a, b in list(couple.subgraph(component).edges):
            couple.add_edge(tail[a], tail[b])
        for tensor, chs in channels.items():
            if any(gg in tail and i >= k for gg, i in chs):
                channels[tensor] = [(tail[gg], i - k) if gg in tail and i >= k else (gg, i) for gg, i in chs]

    def couple_lists(a: str, b: str) -> None:
        """Couple tensors a and b channel by channel, splitting groups until both are runs of whole groups."""
        p = 0
        while p < len(channels[a]):
            (ga, ia), (gb, ib) = channels[a][p], channels[b][p]
            if ia:
                split(ga, ia)
                continue
            if ib:
                split(gb, ib)
                continue
            run = 1
            while (p + run < len(channels[a]) and run < min(groups[ga].size, groups[gb].size)
                   and channels[a][p + run] == (ga, run) and channels[b][p + run] == (gb, run)):
                run += 1
            if run < groups[ga].size:
                split(ga, run)
                continue
            if run < groups[gb].size:
                split(gb, run)
                continue
            couple.add_edge(ga, gb)
            p += run

    def padded_channels(node: onnx.NodeProto, chs: list[Channel]) -> list[Channel] | None:
        """The channel list of a constant-mode zero Pad whose channel-axis padding is only at the end."""
        pads = idx.constant(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        value = idx.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(1)
        axes = idx.constant(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        mode = attr(node, "mode", b"constant")
        if pads is None or axes is not None or mode not in (b"constant", "constant") or value is None or np.any(value):
            return None
        rank = len(pads) // 2
        if rank < 3 or pads[1] != 0 or pads[rank + 1] < 0 or pads[0] or pads[rank]:
            return None
        if pads[rank + 1] == 0:
            return chs
        gid = max(groups, default=-1) + 1
        groups[gid] = ChannelGroup(gid, int(pads[rank + 1]), [], [])
        couple.add_node(gid)
        channel_pads.add(node.name or node.output[0])
        return chs + [(gid, i) for i in range(int(pads[rank + 1]))]

    def per_channel_const(name: str, c: int) -> bool:
        v = idx.constant(name)
        return v is not None and (v.size == 1 or (v.ndim >= 3 and v.shape[-3] == c and v.size == c))

    for node in model.graph.node:
        ins = [i for i in node.input if i in channels]
        op = node.op_type
        name = node.name or node.output[0]
        if op == "Conv":
            w = idx.constant(node.input[1])
            group = attr(node, "group", 1)
            if node.input[0] in channels:
                cin = len(channels[node.input[0]])
                if w is not None and group == cin and w.shape[1] == 1 and w.shape[0] == cin:
                    channels[node.output[0]] = channels[node.input[0]]      # depthwise: channels pass
                    depthwise.add(name)
                    for g in {g for g, _ in channels[node.input[0]]}:
                        groups[g].followers.append(name)
                    continue
                if group != 1 or w is None:
                    refuse(channels[node.input[0]], f"grouped or non-constant Conv '{name}'")
                else:
                    consumers.append(name)
            if w is not None and group == 1:
                channels[node.output[0]] = new_group(w.shape[0], name)
            elif w is not None:
                channels[node.output[0]] = new_group(w.shape[0], name)
                refuse(channels[node.output[0]], f"grouped Conv '{name}' (group={group})")
            continue
        if op == "ConvTranspose" and node.input[0] in channels:
            if attr(node, "group", 1) != 1 or idx.constant(node.input[1]) is None:
                refuse(channels[node.input[0]], f"grouped or non-constant ConvTranspose '{name}'")
            else:
                consumers.append(name)
            continue
        if not ins:
            continue
        if op in PASS_THROUGH and node.input[0] in channels:
            chs = channels[node.input[0]]
            extra = [i for i in node.input[1:] if i]
            if op in ("BatchNormalization", "PRelu") or any(not per_channel_const(i, len(chs)) for i in extra
                                                           if op not in ("Resize", "Upsample", "Clip")):
                if op in ("BatchNormalization", "PRelu"):
                    for g in {g for g, _ in chs}:
                        groups[g].followers.append(name)
                elif any(not per_channel_const(i, len(chs)) for i in extra):
                    refuse(chs, f"{op} '{name}' has non-constant or non-per-channel parameters")
            channels[node.output[0]] = chs
            continue
        if op in BINARY:
            a, b = node.input[0], node.input[1]
            if a in channels and b in channels:
                ca, cb = channels[a], channels[b]
                if len(ca) != len(cb):
                    refuse(ca + cb, f"{op} '{name}' broadcasts over channels")
                    channels[node.output[0]] = ca
                    continue
                couple_lists(a, b)
                channels[node.output[0]] = channels[a]
                continue
            mapped, other = (a, b) if a in channels else (b, a)
            if not per_channel_const(other, len(channels[mapped])):
                refuse(channels[mapped], f"{op} '{name}' with a non-constant, non-per-channel operand")
            else:
                for g in {g for g, _ in channels[mapped]}:
                    groups[g].followers.append(name)
            channels[node.output[0]] = channels[mapped]
            continue
        if op == "Pad" and node.input[0] in channels:
            padded = padded_channels(node, channels[node.input[0]])
            if padded is not None:
                channels[node.output[0]] = padded
                continue
        if op == "Concat" and attr(node, "axis") in (1, -3) and all(i in channels for i in node.input):
            channels[node.output[0]] = [c for i in node.input for c in channels[i]]
            continue
        output = reached_output(node)
        for i in ins:
            refuse(channels[i], f"reaches graph output '{output}' through {op} '{name}'" if output
                   else f"op {op} of node '{name}' reads these channels and is not modelled")
    for out in model.graph.output:
        if out.name in channels:
            refuse(channels[out.name], f"reaches graph output '{out.name}'")
    # Residual couplings: a connected component is one group for selection purposes.
    for component in nx.connected_components(couple):
        members = sorted(component)
        why = next((refusals[g] for g in members if g in refusals), "")
        sizes = {groups[g].size for g in members}
        if len(sizes) > 1:
            why = why or "residual joins groups of different sizes"
        if not any(groups[g].producers for g in members):
            why = why or "only padding zeros"
        for g in members:
            groups[g].refused = why
        root = members[0]
        for g in members[1:]:
            groups[root].producers += [p for p in groups[g].producers if p not in groups[root].producers]
            groups[root].followers += [f for f in groups[g].followers if f not in groups[root].followers]
            for tensor, chs in channels.items():
                channels[tensor] = [(root, i) if gg == g else (gg, i) for gg, i in chs]
            del groups[g]
    return Dependencies(groups, channels, consumers, depthwise, channel_pads)


def channel_importance(model: onnx.ModelProto, deps: Dependencies, criterion: str = "l1") -> dict[int, np.ndarray]:
    """Per group, one score per channel, summed over every producer row that is that channel, each producer
    normalised by its mean so coupled convs of different scale count alike (padding zeros add nothing).
    l1 / l2: the producers' filter norms. bn: the BatchNormalization scale |gamma| / sqrt(var + eps) of the
    BNs that directly follow the producers (network-slimming style); groups where a producer has no such BN
    fall back to L1."""
    idx = GraphIndex(model.graph)
    nodes = {n.name or n.output[0]: n for n in model.graph.node}
    scores = {gid: np.zeros(group.size) for gid, group in deps.groups.items()}
    producers = sorted({p for g in deps.groups.values() for p in g.producers})
    bn_scales = {p: _bn_scale(idx, nodes[p]) for p in producers} if criterion == "bn" else {}
    with_bn = {gid for gid, g in deps.groups.items() if g.producers and all(
        bn_scales.get(p) is not None for p in g.producers)}
    for p in producers:
        chs = deps.channels.get(nodes[p].output[0], [])
        w = idx.constant(nodes[p].input[1]).reshape(len(chs), -1).astype(np.float64)
        norms = np.sqrt((w ** 2).sum(1)) if criterion == "l2" else np.abs(w).sum(1)
        bn = bn_scales.get(p)
        for row, (gid, i) in enumerate(chs):
            s = bn if gid in with_bn and bn is not None else norms
            scores[gid][i] += s[row] / max(s.mean(), 1e-12)
    return scores


def _bn_scale(idx: GraphIndex, producer: onnx.NodeProto) -> np.ndarray | None:
    readers = idx.consumers.get(producer.output[0], [])
    if len(readers) != 1 or readers[0].op_type != "BatchNormalization":
        return None
    bn = readers[0]
    gamma, var = idx.constant(bn.input[1]), idx.constant(bn.input[4])
    if gamma is None or var is None:
        return None
    return np.abs(gamma.astype(np.float64)) / np.sqrt(var.astype(np.float64) + attr(bn, "epsilon", 1e-5))
