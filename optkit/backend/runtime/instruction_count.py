"""Executed AArch64 instructions per inference, counted under qemu user mode: a deterministic measure of
ARM code on any machine, unmoved by load (a count, not a time; harness/arm_estimate.py turns counts
into estimated milliseconds).

- `count_plugin.c` is compiled once with the host's C compiler (it needs no QEMU headers) and loaded into
  the dynamic `qemu-aarch64` (the static build cannot load plugins). It records every translated block's
  instruction mix and how often it ran, and snapshots that at marks the guest makes.
- `count_runner.py` runs one engine in the emulated process: warm-up, then N inferences between marks.
  An inference is the difference between two marks, so start-up, imports and warm-up are left out; two
  inferences must agree, or the count is refused as not deterministic.
- Each qemu CPU model (`-cpu cortex-a72`, ...) runs in a view of the sysroot with that core's
  /proc/cpuinfo, since onnxruntime and LiteRT choose kernels by the features they read there.
- Instructions are attributed to the mapped file they ran in, and within an ELF (the model's library) to
  its functions, from the guest's /proc/self/maps and the file's symbol table.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optkit.core.errors import ArtifactError

PLUGIN_SOURCE = Path(__file__).with_name("count_plugin.c")
RUNNER = Path(__file__).with_name("count_runner.py")
ENGINES = ("tvm", "onnxruntime", "litert", "ncnn")
INFERENCES = 2              # counted inferences per process (they must agree)
WARMUP = 3                  # CPython 3.11 specializes its bytecode over the first runs: not the model's cost
# The two inferences of an optkit build may differ by 0.1 %, or by 50k instructions, whichever is more: the
# Python interpreter and libc around a run vary by up to ~12k (measured); the model's own library does not vary
# at all. The anchors' own kernels vary a little (onnxruntime fp32 pose: 0.12 % between two runs of one
# process), so they are held to 2 % and their counts are the mean of the two.
DETERMINISM_TOLERANCE = {"tvm": 0.001, "onnxruntime": 0.02, "litert": 0.02, "ncnn": 0.02}
DETERMINISM_FLOOR = 50_000

# What /proc/cpuinfo says on each core (features as the Linux kernel lists them; part numbers from Arm).
CPU_MODELS: dict[str, tuple[str, str]] = {
    "cortex-a53": ("fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid", "0xd03"),
    "cortex-a72": ("fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid", "0xd08"),
    "cortex-a76": ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                   "asimddp", "0xd0b"),
}


@dataclass
class Counts:
    """One inference's executed instructions, by class and by where they ran."""

    engine: str
    cpu: str
    instructions: int
    simd: int                   # instructions on vector registers (v/q)
    loads: int
    stores: int
    dot_products: int           # SDOT/UDOT instructions
    by_object: dict[str, int] = field(default_factory=dict)       # mapped file -> instructions
    by_function: dict[str, int] = field(default_factory=dict)     # function of the profiled library -> instructions
    spread: float = 0.0         # relative difference between the two counted inferences

    def as_dict(self) -> dict:
        return {"engine": self.engine, "cpu": self.cpu, "instructions": self.instructions, "simd": self.simd,
                "loads": self.loads, "stores": self.stores, "dot_products": self.dot_products,
                "spread": self.spread, "by_object": self.by_object, "by_function": self.by_function}


def cache_dir() -> Path:
    return Path(os.environ.get("OPTKIT_CACHE", Path.home() / ".cache" / "optkit"))


def plugin_path() -> Path:
    """The compiled plugin, built on first use (keyed by the source's hash, so an edit rebuilds it)."""
    digest = hashlib.sha256(PLUGIN_SOURCE.read_bytes()).hexdigest()[:16]
    path = cache_dir() / "count-plugin" / digest / "libcount.so"
    if path.is_file():
        return path
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        raise ArtifactError("instruction counting needs a C compiler for its qemu plugin: apt-get install gcc")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        built = Path(tmp) / "libcount.so"
        proc = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(built), str(PLUGIN_SOURCE)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ArtifactError(f"building the counting plugin failed: {proc.stderr.strip()[-500:]}")
        os.replace(built, path)
    return path


def qemu_with_plugins() -> str:
    qemu = shutil.which("qemu-aarch64")
    if qemu is None:
        raise ArtifactError("instruction counting needs the dynamic qemu user-mode build, which loads plugins "
                            "(the static qemu-aarch64-static cannot): apt-get install qemu-user")
    return qemu


def cpu_view(sysroot: Path, cpu: str) -> Path:
    """The sysroot as seen by one core model: links to its folders, plus that core's /proc/cpuinfo and a
    one-CPU /sys (the host's x86 files would crash onnxruntime's and LiteRT's cpuinfo at import)."""
    if cpu not in CPU_MODELS:
        raise ArtifactError(f"unknown qemu CPU model '{cpu}'; known: {', '.join(CPU_MODELS)}")
    features, part = CPU_MODELS[cpu]
    view = cache_dir() / "aarch64-cpu" / cpu
    cpuinfo = (f"processor\t: 0\nBogoMIPS\t: 48.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
               f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 0\n\n")
    if (view / "proc" / "cpuinfo").is_file() and (view / "proc" / "cpuinfo").read_text() == cpuinfo \
            and all((view / d).resolve() == (sysroot / d).resolve() for d in ("usr", "lib", "opt", "etc")):
        return view
    (view / "proc").mkdir(parents=True, exist_ok=True)
    (view / "sys/devices/system/cpu").mkdir(parents=True, exist_ok=True)
    for entry in sysroot.iterdir():
        if entry.name in ("proc", "sys") or entry.name.startswith("."):
            continue
        link = view / entry.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(entry)
    (view / "proc" / "cpuinfo").write_text(cpuinfo)
    for name in ("possible", "present", "online"):
        (view / "sys/devices/system/cpu" / name).write_text("0\n")
    return view


def anchors_site(sysroot: Path) -> Path:
    return sysroot / "opt" / "anchors-site"


def count_inference(engine: str, model: str | Path, inputs: list[np.ndarray] | None, cpu: str,
                    seed: int = 0, timeout: float = 1800) -> Counts:
    """Instructions of one single-threaded inference of `model` on `engine` under `-cpu cpu`. `inputs` in the
    engine's input order (None: the runner draws them from `seed` and the engine's declared shapes)."""
    from optkit.backend.runtime.emulation import sysroot_path

    if engine not in ENGINES:
        raise ArtifactError(f"unknown engine '{engine}'; known: {', '.join(ENGINES)}")
    sysroot = sysroot_path()
    if not (sysroot / ".complete").is_file():
        raise ArtifactError(f"instruction counting needs the AArch64 sysroot at {sysroot}: run `optkit emulator "
                            f"setup`")
    site = [str(sysroot / "opt" / "optkit-site")]
    if engine != "tvm":
        if not anchors_site(sysroot).is_dir():
            raise ArtifactError(f"{engine} under emulation needs its aarch64 wheel in {anchors_site(sysroot)}: "
                                f"run `optkit emulator setup` again")
        site.append(str(anchors_site(sysroot)))
    view = cpu_view(sysroot, cpu)
    with tempfile.TemporaryDirectory(prefix="optkit-count-") as tmp:
        feeds = Path(tmp) / "inputs.npz"
        if inputs is None:
            feeds = Path(f"seed:{seed}")
        else:
            np.savez(feeds, *inputs)
        out = Path(tmp) / "counts.txt"
        command = [qemu_with_plugins(), "-L", str(view), "-cpu", cpu, "-plugin", f"{plugin_path()},outfile={out}",
                   "-E", f"PYTHONPATH={os.pathsep.join(site)}", "-E", "PYTHONHOME=/usr", "-E", "PYTHONHASHSEED=0",
                   str(view / "usr/bin/python3.11"), str(RUNNER), engine, str(model), str(feeds), str(WARMUP),
                   str(INFERENCES)]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ArtifactError(f"counting {engine} on {model} under qemu took over {timeout:.0f} s") from exc
        if proc.returncode != 0:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            raise ArtifactError(f"counting {engine} on {model} under qemu failed (exit {proc.returncode}): {tail}")
        marks = read_marks(out)
    return summarize(engine, cpu, marks, parse_maps(proc.stdout), Path(model) if engine == "tvm" else None)


Block = tuple[int, int, int, int, int, int]     # vaddr, insns, simd, loads, stores, dots


def read_marks(path: Path) -> dict[str, dict[Block, int]]:
    """The plugin's snapshots: mark label -> block -> executions so far."""
    marks: dict[str, dict[Block, int]] = {}
    current: dict[Block, int] = {}
    with open(path) as f:
        for line in f:
            if line.startswith("mark "):
                current = marks.setdefault(line.split()[1], {})
                continue
            vaddr, *numbers = line.split()
            *mix, executions = (int(v) for v in numbers)
            current[(int(vaddr, 16), *mix)] = executions
    return marks


def parse_maps(text: str) -> list[tuple[int, int, int, str]]:
    """(start, end, file offset, path) of every file-backed mapping in /proc/self/maps."""
    maps = []
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5].startswith("/") and "-" in parts[0]:
            start, end = (int(v, 16) for v in parts[0].split("-"))
            maps.append((start, end, int(parts[2], 16), parts[5].strip()))
    return maps


def summarize(engine: str, cpu: str, marks: dict[str, dict[Block, int]], maps, library: Path | None) -> Counts:
    """Counts of one inference (marks 0 -> 1), checked against the next (1 -> 2)."""
    if not {"0", "1", "2"} <= set(marks):
        raise ArtifactError(f"the counting run of {engine} left marks {sorted(marks)}, not 0, 1 and 2")
    first = _delta(marks["0"], marks["1"])
    second = _delta(marks["1"], marks["2"])
    totals = [sum(b[1] * n for b, n in d.items()) for d in (first, second)]
    tolerance = DETERMINISM_TOLERANCE.get(engine, DETERMINISM_TOLERANCE["tvm"])
    if abs(totals[0] - totals[1]) > max(tolerance * max(totals), DETERMINISM_FLOOR):
        raise ArtifactError(f"{engine}: two identical inferences executed {totals[0]} and {totals[1]} instructions; "
                            f"the count is not deterministic (threads?)")
    spread = abs(totals[0] - totals[1]) / max(max(totals), 1)
    if engine != "tvm":      # the anchors: the mean of the two inferences
        first = {b: (first.get(b, 0) + second.get(b, 0)) / 2 for b in set(first) | set(second)}
    classes = [round(sum(b[k] * n for b, n in first.items())) for k in range(1, 6)]
    by_object: dict[str, int] = defaultdict(int)
    by_function: dict[str, int] = defaultdict(int)
    symbols = _function_finder(library, maps) if library is not None else None
    for block, n in first.items():
        where = _mapping_of(block[0], maps)
        by_object[Path(where[3]).name if where else "[anonymous]"] += block[1] * n
        if symbols is not None and where is not None and Path(where[3]).name == library.name:
            by_function[symbols(block[0])] += block[1] * n
    ordered = lambda d: {k: round(v) for k, v in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))}  # noqa: E731
    return Counts(engine, cpu, *classes, by_object=ordered(by_object), by_function=ordered(by_function),
                  spread=round(spread, 6))


def _delta(before: dict[Block, int], after: dict[Block, int]) -> dict[Block, int]:
    return {b: n - before.get(b, 0) for b, n in after.items() if n - before.get(b, 0)}


def _mapping_of(address: int, maps):
    for m in maps:
        if m[0] <= address < m[1]:
            return m
    return None


def _function_finder(library: Path, maps):
    """address -> the function of `library` it lies in, from the ELF symbol table and the load base in the
    maps. An address belongs to the nearest function symbol at or below it: TVM's parallel bodies
    (`NAME_compute_`) carry a symbol whose size covers only their entry. Names are TVM's PrimFunc names
    (the `__tvm_ffi_` wrapper prefix and the `_compute_` suffix dropped)."""
    import bisect

    mine = [m for m in maps if Path(m[3]).name == library.name]
    if not mine:
        return lambda address: "[not mapped]"
    base = min(m[0] - m[2] for m in mine)
    functions = sorted((start, name) for start, _, name in elf_functions(library))
    starts = [start for start, _ in functions]

    def find(address: int) -> str:
        k = bisect.bisect_right(starts, address - base) - 1
        if k < 0:
            return "[library start-up]"
        return functions[k][1].removeprefix("__tvm_ffi_").removesuffix("_compute_")

    return find


def elf_functions(path: Path) -> list[tuple[int, int, str]]:
    """(address, size, name) of the FUNC symbols of a 64-bit little-endian ELF (.symtab, else .dynsym)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ArtifactError(f"{path}: not a 64-bit little-endian ELF")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + k * shentsize) for k in range(shnum)]
    tables = {s[1]: s for s in sections if s[1] in (2, 11)}       # SHT_SYMTAB, SHT_DYNSYM
    table = tables.get(2) or tables.get(11)
    if table is None:
        return []
    strings = sections[table[6]]
    out = []
    for k in range(table[5] // 24):
        name_off, info, _, _, value, size = struct.unpack_from("<IBBHQQ", data, table[4] + k * 24)
        if info & 0xF == 2 and value:                               # STT_FUNC, defined
            end = data.index(b"\0", strings[4] + name_off)
            out.append((value, size, data[strings[4] + name_off:end].decode(errors="replace")))
    return out
