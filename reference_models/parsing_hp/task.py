"""High-precision parsing: the same evaluation set and metric (mIoU) as the real-time model."""

from ..parsing.task import ParsingTask


class ParsingHPTask(ParsingTask):
    name = "parsing_hp"
    description = "high-precision human parsing (Inception + ASPP), 240x320"
    size_budget_mb = None
    seed_note = "production model: server-side teacher / accuracy reference, no published number"
    data = "people.py, the same scenes as parsing"
