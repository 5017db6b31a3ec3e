"""Which channels must be pruned together: a dependency analysis over an ONNX graph (NCHW, axis 1).

Every Conv with group=1 *produces* a fresh channel group. Channels then flow through ops:
- pass-through ops (activations, BatchNormalization, Resize, pooling, depthwise Conv, per-channel
  affine with constants) keep the channel list of their input;
- Concat on axis 1 joins channel lists end to end (this is where index offsets come from);
- Add/Sub/Mul/Div/Max/Min of two channel tensors (a residual) couple their groups: the same channels
  must be removed on both sides, so the groups are merged (connected components, networkx);
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
                "BatchNormalization", "PRelu", "Cast"}
BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min"}

Channel = tuple[int, int]  # (group id, channel index within the group's producers)


@dataclass
class ChannelGroup:
    gid: int
    size: int
    producers: list[str] = field(default_factory=list)   # Conv nodes whose output channels these are
    followers: list[str] = field(default_factory=list)   # nodes whose per-channel params follow the group
    refused: str = ""                                    # why it cannot be pruned ("" = prunable)


@dataclass
class Dependencies:
    groups: dict[int, ChannelGroup]
    channels: dict[str, list[Channel]]     # tensor → channel list (axis 1)
    consumers: list[str]                   # Conv/ConvTranspose nodes whose input channels are sliced
    depthwise: set[str] = field(default_factory=set)   # depthwise Convs: channels pass through them

    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups.values() if not g.refused]


def analyze(model: onnx.ModelProto) -> Dependencies:
    idx = GraphIndex(model.graph)
    groups: dict[int, ChannelGroup] = {}
    channels: dict[str, list[Channel]] = {}
    couple = nx.Graph()
    consumers: list[str] = []
    depthwise: set[str] = set()
    refusals: dict[int, str] = {}

    def new_group(size: int, producer: str) -> list[Channel]:
        gid = len(groups)
        groups[gid] = ChannelGroup(gid, size, [producer])
        couple.add_node(gid)
        return [(gid, i) for i in range(size)]

    def refuse(chs: list[Channel], why: str) -> None:
        for g in {g for g, _ in chs}:
            refusals.setdefault(g, why)

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
                refuse(new_group(w.shape[0], name), f"grouped Conv '{name}' (group={group})")
                channels[node.output[0]] = [(len(groups) - 1, i) for i in range(w.shape[0])]
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
                aligned = all(x[1] == y[1] for x, y in zip(ca, cb)) and len({g for g, _ in ca}) == 1 and len(
                    {g for g, _ in cb}) == 1
                if not aligned:
                    refuse(ca + cb, f"{op} '{name}' joins channel lists that are not whole groups")
                else:
                    couple.add_edge(ca[0][0], cb[0][0])
                channels[node.output[0]] = ca
                continue
            mapped, other = (a, b) if a in channels else (b, a)
            if not per_channel_const(other, len(channels[mapped])):
                refuse(channels[mapped], f"{op} '{name}' with a non-constant, non-per-channel operand")
            else:
                for g in {g for g, _ in channels[mapped]}:
                    groups[g].followers.append(name)
            channels[node.output[0]] = channels[mapped]
            continue
        if op == "Concat" and attr(node, "axis") in (1, -3) and all(i in channels for i in node.input):
            channels[node.output[0]] = [c for i in node.input for c in channels[i]]
            continue
        for i in ins:
            refuse(channels[i], f"op {op} of node '{name}' reads these channels and is not modelled")
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
        for g in members:
            groups[g].refused = why
        root = members[0]
        for g in members[1:]:
            groups[root].producers += groups[g].producers
            groups[root].followers += groups[g].followers
            for tensor, chs in channels.items():
                channels[tensor] = [(root, i) if gg == g else (gg, i) for gg, i in chs]
            del groups[g]
    return Dependencies(groups, channels, consumers, depthwise)


def channel_importance(model: onnx.ModelProto, deps: Dependencies, criterion: str = "l1") -> dict[int, np.ndarray]:
    """Per group, one score per channel, each source normalised by its mean so coupled convs of different
    scale count alike. l1 / l2: the producers' filter norms. bn: the BatchNormalization scale
    |gamma| / sqrt(var + eps) of the BNs that directly follow the producers (network-slimming style);
    groups without such a BN fall back to L1."""
    idx = GraphIndex(model.graph)
    nodes = {n.name or n.output[0]: n for n in model.graph.node}
    scores: dict[int, np.ndarray] = {}
    for gid, group in deps.groups.items():
        total = np.zeros(group.size)
        bn_scales = [_bn_scale(idx, nodes[p]) for p in group.producers] if criterion == "bn" else []
        bn_scales = [b for b in bn_scales if b is not None and b.shape == (group.size,)]
        if bn_scales:
            for s in bn_scales:
                total += s / max(s.mean(), 1e-12)
        else:
            for p in group.producers:
                w = idx.constant(nodes[p].input[1]).reshape(group.size, -1).astype(np.float64)
                s = np.sqrt((w ** 2).sum(1)) if criterion == "l2" else np.abs(w).sum(1)
                total += s / max(s.mean(), 1e-12)
        scores[gid] = total
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
