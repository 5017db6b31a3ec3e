"""The pass manager: runs passes in order with instruments around each; stops at the first failure."""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from optkit.core.errors import OptkitError, PassFailedError
from optkit.pass_infra.contract import Pass, PassContext, copy_model
from optkit.pass_infra.instruments import Instrument, PassRecord, default_instruments


class PassManager:
    def __init__(self, passes: Sequence[Pass], instruments: Sequence[Instrument] | None = None):
        self.passes = list(passes)
        self.instruments = list(default_instruments() if instruments is None else instruments)

    def run(self, model: onnx.ModelProto, ctx: PassContext | None = None
            ) -> tuple[onnx.ModelProto, list[PassRecord]]:
        """Run every pass; return the final model and one record per pass. The input is not modified."""
        ctx = ctx or PassContext()
        current = copy_model(model)
        records: list[PassRecord] = []
        for index, pass_ in enumerate(self.passes):
            record = PassRecord(index=index, name=pass_.name, spec=pass_.describe(), exact=pass_.exact,
                                remedy="" if pass_.exact else pass_.loss_remedy())
            for inst in self.instruments:
                inst.run_before_pass(pass_, current, ctx, record)
            try:
                result = pass_.run(copy_model(current), ctx)
            except OptkitError:
                raise
            except Exception as exc:
                raise PassFailedError(pass_.name, f"raised {type(exc).__name__}: {exc}") from exc
            # What the pass says is not trusted: the model changed if its bytes did, and is then checked.
            result.changed = _serialized(result.model) != _serialized(current)
            record.changed, record.stats = result.changed, dict(result.stats)
            for inst in self.instruments:
                inst.run_after_pass(pass_, current, result, ctx, record)
            ctx.log.info("%s: changed=%s %s", pass_.describe(), result.changed, result.stats)
            records.append(record)
            current = result.model
        return current, records


def _serialized(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)
