"""The tuning database `optkit tune` writes and `optkit compile --tuning-db DIR` reads: MetaSchedule's
JSON pair, marked with the target it was tuned for, and the digest a manifest records."""

from __future__ import annotations

import hashlib
from pathlib import Path

from optkit.backend.targets import Target
from optkit.core.errors import OptionError, library_message

WORKLOADS, RECORDS, TARGET = "database_workload.json", "database_tuning_record.json", "optkit-target.json"


def open_database(directory: str | Path, target: Target, create: bool = False):
    """The database in `directory`, which must have been tuned for `target`: MetaSchedule matches records by
    function structure alone, so an x86 database would silently schedule an ARM build."""
    import json

    from tvm.s_tir import meta_schedule as ms

    directory = Path(directory)
    if not create and not (directory / RECORDS).is_file():
        raise OptionError(f"--tuning-db {directory}: no MetaSchedule database there ({RECORDS} missing); "
                          f"create one with `optkit tune`")
    marker = directory / TARGET
    if marker.is_file():
        try:
            tuned_for = json.loads(marker.read_text())["target"]
        except (ValueError, KeyError, TypeError) as exc:
            raise OptionError(f"--tuning-db {directory}: {TARGET} is unreadable ({exc}); not an optkit tuning "
                              f"database, or a corrupt one") from exc
        if tuned_for != target.name:
            raise OptionError(f"--tuning-db {directory} was tuned for target '{tuned_for}', not '{target.name}'")
    elif create:
        directory.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"target": target.name, "tvm_target": target.tvm_target_dict()}, indent=2) + "\n")
    try:
        return ms.database.JSONDatabase(str(directory / WORKLOADS), str(directory / RECORDS), allow_missing=create)
    except Exception as exc:  # TVM's parse errors of a corrupt JSON-lines file
        raise OptionError(f"--tuning-db {directory}: corrupt MetaSchedule database ({library_message(exc)}); re-create it with "
                          f"`optkit tune`") from exc


def database_digest(directory: str | Path) -> str:
    """sha256 over the two database files: what a manifest records about the tuning it used."""
    h = hashlib.sha256()
    for name in (WORKLOADS, RECORDS):  # the target marker is not hashed: it holds this machine's CPU name
        h.update((Path(directory) / name).read_bytes())
    return h.hexdigest()
