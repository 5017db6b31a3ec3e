"""The artifact directory: library + optimized ONNX + manifest.json, and how to read one back."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from .atomic import PARTIAL_MARKER
from .errors import ArtifactError

MANIFEST = "manifest.json"
OPTIMIZED_ONNX = "model.opt.onnx"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def deterministic_tar(output: str, files: list[str], **_: Any) -> None:
    """A gzip'ed tar with fixed names, order, times and owners, so the same objects give the same bytes.
    Used as TVM's `fcompile` for targets that ship object files (iOS)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(files, key=lambda p: Path(p).name):
            data = Path(path).read_bytes()
            info = tarfile.TarInfo(Path(path).name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    with open(output, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buf.getvalue())


deterministic_tar.output_format = "tar"  # type: ignore[attr-defined]


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Add the sha256 of every file in the directory, then write manifest.json (sorted keys, stable)."""
    manifest["files"] = {p.name: sha256_file(p) for p in sorted(directory.iterdir())
                         if p.name not in (MANIFEST, PARTIAL_MARKER)}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{directory}: not an optkit artifact directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: unreadable manifest: {exc}") from exc
    for name, digest in manifest.get("files", {}).items():
        file = directory / name
        if not file.is_file():
            raise ArtifactError(f"{directory}: manifest lists {name}, which is missing")
        if sha256_file(file) != digest:
            raise ArtifactError(f"{file}: sha256 differs from the manifest (modified or corrupt)")
    return manifest
