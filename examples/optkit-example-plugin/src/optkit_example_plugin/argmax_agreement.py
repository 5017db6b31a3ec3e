"""An optkit evaluator: how often the build under test picks the same class as the fp32 model.

Registered under the `optkit.evaluators` entry-point group; a budgets file selects it with
`evaluator = "argmax-agreement"` (options from `[MODEL.evaluator_options]` go to the constructor). optkit
calls it with the build's runner, the evaluation inputs and the fp32 model's outputs on them.
"""

from __future__ import annotations

import numpy as np


class ArgmaxAgreement:
    metric_name = "argmax agreement"
    higher_is_better = True

    def __init__(self, output: str | None = None, axis: int = 1):
        self.output, self.axis = output, axis

    def __call__(self, run, samples, reference) -> float:
        """The fraction of positions (over every sample) where argmax along `axis` agrees with fp32's."""
        agree = total = 0
        for feeds, expected in zip(samples, reference):
            name = self.output or next(iter(expected))
            got = np.argmax(run(feeds)[name], axis=self.axis)
            want = np.argmax(expected[name], axis=self.axis)
            agree += int(np.sum(got == want))
            total += want.size
        return agree / max(total, 1)
