"""Running models under onnxruntime on generated inputs, and comparing results.

This is what the pass manager uses to hold exact passes to their word, and what `optkit run`
uses to compare a compiled artifact with the ONNX it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

# Symbolic dims get these sizes when no shape is given: batch 1, everything else large enough for
# typical conv stacks to stay valid.
DEFAULT_BATCH = 1
DEFAULT_DIM = 32

# onnxruntime logs its errors (and warnings about deprecated attributes) to stderr itself; its errors also come
# back as exceptions, which optkit reports in one line, so only fatal messages are left to it.
ort.set_default_logger_severity(4)


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple[int | str | None, ...]
    dtype: np.dtype


def _np_dtype(vi: onnx.ValueInfoProto) -> np.dtype:
    from optkit.core.errors import ModelLoadError

    code = vi.type.tensor_type.elem_type
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(code))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"graph input/output '{vi.name}' has element type {code}, which is not a tensor type "
                             f"optkit can handle") from exc


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """Graph inputs that are real inputs (not initializers), with their element types and dims."""
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
        specs.append(InputSpec(vi.name, dims, _np_dtype(vi)))
    return specs


def output_specs(model: onnx.ModelProto) -> list[InputSpec]:
    specs = []
    for vi in model.graph.output:
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
        specs.append(InputSpec(vi.name, dims, _np_dtype(vi)))
    return specs


def concrete_shape(spec: InputSpec) -> tuple[int, ...]:
    return tuple(
        d if isinstance(d, int) and d > 0 else (DEFAULT_BATCH if axis == 0 else DEFAULT_DIM)
        for axis, d in enumerate(spec.shape)
    )


def make_inputs(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic random inputs: standard normal floats, small non-negative integers, random bools."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in input_specs(model):
        shape = concrete_shape(spec)
        if np.issubdtype(spec.dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype.kind in "OSU":
            from optkit.core.errors import OptionError

            raise OptionError(f"input '{spec.name}' is a string tensor; optkit optimizes and compiles models with "
                              f"numeric inputs only")
        elif spec.dtype == np.bool_:
            feeds[spec.name] = rng.integers(0, 2, shape).astype(np.bool_)
        else:
            feeds[spec.name] = rng.integers(0, 4, shape).astype(spec.dtype)
    return feeds


def ort_session(model: onnx.ModelProto, threads: int = 1, optimize: bool = False) -> ort.InferenceSession:
    """A session over the model as written: graph optimizations off by default, so what is checked
    is the graph itself and not onnxruntime's rewrite of it. Intra-op threads spin between the nodes of
    a run and stop at its end (force_spinning_stop), the policy TVM's workers get in
    vm_runner.configure_threads: spinning past the end of a run steals the cores of whatever runs next, and
    not spinning at all made onnxruntime pay a thread wake-up per node (face: 0.61 ms vs 1.16 ms)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    opts.log_severity_level = 4
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    elif quantizes_activations_per_channel(model):
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def quantizes_activations_per_channel(model: onnx.ModelProto) -> bool:
    """Whether a QuantizeLinear of a computed tensor has a scale per channel (quantize-int8's
    depthwise_channel_grids). onnxruntime 1.32's extended optimizations fuse the Conv writing such a tensor
    into a QLinearConv, which then fails at run time ('result zero point must be a scalar'); its basic
    ones leave the graph runnable."""
    constants = {t.name for t in model.graph.initializer}
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return any(n.op_type == "QuantizeLinear" and n.input[0] not in constants and len(n.input) > 1
               and int(np.prod(shapes.get(n.input[1], ()))) > 1 for n in model.graph.node)


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray], outputs: list[str] | None = None,
            threads: int = 1, what: str = "reference run") -> dict[str, np.ndarray]:
    """One run under onnxruntime, stopped with a ResourceError past optkit's time limit (core/resources.py)."""
    from optkit.core.resources import bounded_ort_run

    return bounded_ort_run(ort_session(model, threads), feeds, what, outputs)


@dataclass(frozen=True)
class Mismatch:
    name: str
    max_abs: float
    tolerance: float
    reason: str = ""


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def compare(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], rtol: float = 1e-4,
            atol: float = 1e-5) -> tuple[float, list[Mismatch]]:
    """Compare outputs by name; tolerance scales with each output's magnitude. Returns the worst
    absolute difference and the outputs that exceed tolerance."""
    worst, bad = 0.0, []
    for name, exp in expected.items():
        if name not in actual:
            bad.append(Mismatch(name, float("inf"), 0.0, "missing"))
            continue
        got = actual[name]
        if exp.shape != got.shape:
            bad.append(Mismatch(name, float("inf"), 0.0, f"shape {got.shape} != {exp.shape}"))
            continue
        # NaN and Inf are compared by position: the same non-finite value in the same place is agreement.
        floating = np.issubdtype(exp.dtype, np.floating) and np.issubdtype(got.dtype, np.floating)
        agree = ((np.isnan(exp) & np.isnan(got)) | (np.isinf(exp) & (exp == got))) if floating \
            else np.zeros(exp.shape, bool)
        exp_f, got_f = exp[~agree], got[~agree]
        diff = max_abs_diff(exp_f, got_f)
        magnitude = np.abs(exp_f[np.isfinite(exp_f)]) if floating else np.abs(exp_f)
        tol = atol + rtol * float(np.max(magnitude)) if magnitude.size else atol
        worst = max(worst, diff)
        if not diff <= tol:  # a NaN or Inf in only one of them fails here too
            reason = "non-finite values in different places" if not np.isfinite(diff) else ""
            bad.append(Mismatch(name, diff, tol, reason))
    return worst, bad


def with_intermediate_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of the model that also returns the named intermediate tensors (types from shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name in types and name not in present and types[name].tensor_type.elem_type:
            vi = onnx.ValueInfoProto(name=name)
            vi.type.tensor_type.elem_type = types[name].tensor_type.elem_type
            out.graph.output.append(vi)
    return out


def first_divergent_node(before: onnx.ModelProto, after: onnx.ModelProto,
                         feeds: dict[str, np.ndarray]) -> str | None:
    """The first node of `after`, in graph order, whose output differs from the tensor of the same
    name in `before`. Used to name the culprit when an exact pass changes the results."""
    before_names = {o for n in before.graph.node for o in n.output}
    candidates = [o for n in after.graph.node for o in n.output if o and o in before_names]
    if not candidates:
        return None
    try:
        ref = run_ort(with_intermediate_outputs(before, candidates), feeds)
        got = run_ort(with_intermediate_outputs(after, candidates), feeds)
    except Exception:  # diagnosis is best effort; the caller already has a mismatch to report
        return None
    for node in after.graph.node:
        for o in node.output:
            if o in ref and o in got:
                _, bad = compare({o: ref[o]}, {o: got[o]})
                if bad:
                    return f"{node.op_type} node '{node.name or '(unnamed)'}' (output '{o}')"
    return None


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (higher is better; inf when identical)."""
    ref = np.asarray(reference, np.float64)
    noise = float(np.sum((ref - np.asarray(approx, np.float64)) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0:
        return float("inf")
    return 10 * np.log10(max(signal, 1e-30) / noise)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den else 1.0


def worst_cosines(reference: list[dict[str, np.ndarray]], got: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Per output, the worst cosine over the samples. An output of one element per sample (a score, a
    presence flag) is compared as one vector over the samples: the cosine of two single numbers is only
    their sign agreement, 1 for any two of one sign."""
    worst = {}
    for name, first in reference[0].items():
        pairs = [(r[name], g[name]) for r, g in zip(reference, got)]
        if np.size(first) == 1:
            pairs = [(np.ravel([r for r, _ in pairs]), np.ravel([g for _, g in pairs]))]
        worst[name] = min(cosine(r, g) for r, g in pairs)
    return worst
