"""Safe output: results are written to a temporary sibling and moved into place only when complete, and
nothing optkit did not create is ever replaced.

Rules every writer follows (compile's artifact directory, optimize's model, reports, the emulator sysroot):
- a directory is replaced only when it is empty or an optkit artifact (its manifest says so and it holds
  nothing the manifest does not list); anything else is refused unless the caller forces it;
- a file is replaced only when it is a regular file; device nodes, FIFOs, sockets and directories never are;
- an output that is, or contains, one of the command's inputs is refused, forced or not;
- results get the permissions the umask gives (mkstemp/mkdtemp would make them private);
- writers to one path are serialised by a lock on the parent directory, and a temporary directory left by a
  killed run is removed by the next run into the same place (only if it carries optkit's marker).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from optkit.core.errors import OutputError

ARTIFACT_FORMAT_PREFIX = "optkit-artifact/"
PARTIAL_MARKER = ".optkit-partial"     # inside a temporary directory: the pid of the writer


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _same_or_inside(path: Path, inputs: Iterable[str | os.PathLike]) -> str | None:
    """The first input that `path` is, or that lies inside the directory `path`, else None."""
    try:
        target = path.resolve()
    except OSError:
        return None
    for item in inputs:
        try:
            source = Path(item).resolve()
        except OSError:
            continue
        if source == target or target in source.parents:
            return str(item)
    return None


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise OutputError(f"{path}: cannot create its folder {path.parent}: a file is in the way") from exc
    except OSError as exc:
        raise OutputError(f"{path}: cannot create its folder {path.parent}: {exc.strerror}") from exc
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: the folder {path.parent} is not writable")


def _check_name(path: Path, option: str) -> None:
    if not str(path) or path.name in ("", ".", ".."):
        raise OutputError(f"{option} '{path}': give a file or directory name, not '{path}'")
    if len(path.name.encode()) > 200:   # the temporary sibling adds a prefix and suffix; NAME_MAX is 255
        raise OutputError(f"{option} '{path}': name too long ({len(path.name.encode())} bytes; 200 at most)")


@contextlib.contextmanager
def _parent_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on the parent directory: concurrent writers into one folder take turns."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check_file_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                      option: str = "-o") -> Path:
    """Refuse an output file that is an input, or exists and is not a regular file; return it as a Path."""
    path = Path(path)
    _check_name(path, option)
    clash = _same_or_inside(path, inputs)
    if clash:
        raise OutputError(f"{option} {path}: is the input {clash}; write the result somewhere else")
    if path.is_symlink() or path.exists():
        mode = os.stat(path).st_mode if path.exists() else 0
        if path.exists() and not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (device, FIFO or socket)"
            raise OutputError(f"{option} {path}: exists and is {kind}; optkit replaces only regular files")
    return path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (),
                option: str = "-o") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed."""
    path = check_file_output(path, inputs, option)
    _make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{option} {path}: cannot write in {path.parent}: {exc.strerror}") from exc
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result file gets the usual permissions
    try:
        yield Path(tmp)
        with _parent_lock(path):
            check_file_output(path, inputs, option)   # again: another process may have put something there
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def is_artifact_directory(path: Path) -> bool:
    """An optkit artifact: manifest.json of optkit's format, and no file the manifest does not list."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        listed = set(manifest["files"]) | {"manifest.json"}
        present = {p.name for p in path.iterdir()}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (isinstance(manifest, dict) and str(manifest.get("format", "")).startswith(ARTIFACT_FORMAT_PREFIX)
            and present <= listed)


def check_directory_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), force: bool = False,
                           option: str = "-o", owned=is_artifact_directory, what: str = "an optkit artifact"
                           ) -> Path:
    """Refuse a directory output that would destroy something optkit did not create. Looked at under the
    folder's lock: another optkit writer swapping its result in leaves the path missing for a moment."""
    path = Path(path)
    _check_name(path, option)
    clash = _same_or_inside(path, inputs)
    if clash:
        raise OutputError(f"{option} {path}: would replace the input {clash}; write the result somewhere else")
    if not path.parent.is_dir():
        return path
    with _parent_lock(path):
        return _check_existing_directory(path, force, option, owned, what)


def _check_existing_directory(path: Path, force: bool, option: str, owned, what: str) -> Path:
    if not (path.is_symlink() or path.exists()):
        return path
    if path.is_symlink() or not path.is_dir():
        raise OutputError(f"{option} {path}: exists and is not a directory; optkit will not replace it")
    try:
        empty = not any(path.iterdir())
    except OSError as exc:
        raise OutputError(f"{option} {path}: cannot read the directory: {exc.strerror}") from exc
    if not (empty or owned(path) or force):
        raise OutputError(f"{option} {path}: directory exists and is not {what} (it holds other files); choose "
                          f"a new or empty directory, or pass --force to replace it")
    return path


def _remove_stale_partials(path: Path) -> None:
    """Temporary directories of a killed run into `path`: optkit's marker inside, and the writer gone."""
    for candidate in path.parent.glob(f".{path.name}.*.tmp"):
        marker = candidate / PARTIAL_MARKER
        try:
            pid = int(marker.read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
            continue                      # its writer is still running
        except ProcessLookupError:
            shutil.rmtree(candidate, ignore_errors=True)
        except PermissionError:
            continue


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), force: bool = False,
                     option: str = "-o") -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces `path` as a whole. `path` must be new,
    empty or an optkit artifact (or `force`), and must not be or contain an input."""
    inputs = list(inputs)
    path = check_directory_output(path, inputs, force, option)
    _make_parent(path)
    _remove_stale_partials(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise OutputError(f"{option} {path}: cannot write in {path.parent}: {exc.strerror}") from exc
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; an artifact gets the usual permissions
    (tmp / PARTIAL_MARKER).write_text(str(os.getpid()))
    try:
        yield tmp
        (tmp / PARTIAL_MARKER).unlink()
        with _parent_lock(path):
            _check_existing_directory(path, force, option, is_artifact_directory, "an optkit artifact")  # again
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                os.replace(path, old / "replaced")
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
