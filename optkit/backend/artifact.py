"""The artifact directory: library + optimized ONNX + manifest.json, and how to read one back."""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata as md
import io
import json
import struct
import tarfile
from pathlib import Path
from typing import Any

from optkit.core.errors import ArtifactError
from optkit.core.safe_output import PARTIAL_MARKER
from optkit.core.version import __version__

MANIFEST = "manifest.json"
OPTIMIZED_ONNX = "model.opt.onnx"


def versions() -> dict[str, str]:
    """The tool versions a manifest records."""
    def v(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    return {"optkit": __version__, "tvm": v("apache-tvm"), "tvm_ffi": v("apache-tvm-ffi"), "onnx": v("onnx"),
            "onnxruntime": v("onnxruntime"), "onnxsim": v("onnxsim")}


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


def _require(manifest: dict, path: Path, key: str, kind: type, where: str = "") -> Any:
    container = manifest
    for part in key.split("."):
        if not isinstance(container, dict) or part not in container:
            raise ArtifactError(f"{path}: manifest has no '{key}' (not written by optkit, or edited)")
        container = container[part]
    if not isinstance(container, kind):
        raise ArtifactError(f"{path}: manifest's '{key}' is not a {kind.__name__}")
    return container


def _inside(directory: Path, name: str, manifest_path: Path) -> Path:
    """The file `name` of the artifact; names that leave the directory (or are links) are refused."""
    file = directory / name
    if not name or "/" in name or "\\" in name or name in (".", "..") or file.is_symlink():
        raise ArtifactError(f"{manifest_path}: file '{name}' is not a plain file inside the artifact directory")
    return file


def check_elf_complete(file: Path) -> None:
    """A shared object whose headers point past its end (truncated, then re-hashed) would crash the loader
    with SIGBUS; refuse it instead."""
    data_size = file.stat().st_size
    with open(file, "rb") as f:
        header = f.read(64)
        if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2:
            raise ArtifactError(f"{file}: not a 64-bit ELF shared object (truncated or corrupt)")
        little = header[5] == 1
        order = "<" if little else ">"
        phoff, shoff = struct.unpack_from(order + "QQ", header, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", header, 54)
        if phoff + phnum * phentsize > data_size or shoff + shnum * shentsize > data_size:
            raise ArtifactError(f"{file}: truncated ({data_size} bytes; its headers point past the end)")
        f.seek(phoff)
        table = f.read(phnum * phentsize)
    for k in range(phnum):
        p_offset, = struct.unpack_from(order + "Q", table, k * phentsize + 8)
        p_filesz, = struct.unpack_from(order + "Q", table, k * phentsize + 32)
        if p_offset + p_filesz > data_size:
            raise ArtifactError(f"{file}: truncated ({data_size} bytes; segment {k} ends at {p_offset + p_filesz})")


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of an artifact, after checking its schema, that every file it names lies inside the
    directory, that the library and optimized ONNX are among the hashed files, and every hash."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{directory}: not an optkit artifact directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict) or not str(manifest.get("format", "")).startswith("optkit-artifact/"):
        raise ArtifactError(f"{path}: not an optkit artifact manifest (no 'format': 'optkit-artifact/...')")
    files = _require(manifest, path, "files", dict)
    library = _require(manifest, path, "library.file", str)
    _require(manifest, path, "library.export_format", str)
    _require(manifest, path, "library.kind", str)
    optimized = _require(manifest, path, "optimized_onnx", str)
    _require(manifest, path, "target.arch", str)
    _require(manifest, path, "target.name", str)
    for key in ("inputs", "outputs"):
        for k, spec in enumerate(_require(manifest, path, key, list)):
            if not (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("shape"), list)
                    and isinstance(spec.get("dtype"), str)):
                raise ArtifactError(f"{path}: manifest's {key}[{k}] needs a name, a shape and a dtype")
    for needed in (library, optimized):
        if needed not in files:
            raise ArtifactError(f"{path}: '{needed}' is not among the manifest's hashed files; the artifact "
                                f"cannot be trusted (rebuild it with optkit compile)")
    for name, digest in files.items():
        file = _inside(directory, name, path)
        if not file.is_file():
            raise ArtifactError(f"{directory}: manifest lists {name}, which is missing")
        if sha256_file(file) != digest:
            raise ArtifactError(f"{file}: sha256 differs from the manifest (modified or corrupt)")
    if manifest["library"]["export_format"] == "so":
        check_elf_complete(directory / library)
    return manifest
