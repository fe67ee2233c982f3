"""Writing files so that a failure never leaves a partial one behind, and never replaces a good one.

Why a check after writing: SimpleITK's and Slicer's writers do not report a short write (a full disk leaves a
0-byte or cut-off file and the call returns), so "the writer returned" proves nothing. Every file is written
under a temporary name beside its target, flushed to disk, checked (not empty; complete for the formats whose
completeness can be read back: JSON, gzip, zip/torch, numpy; the writer's own ``check`` otherwise), and only
then moved over the target. A failed write raises :class:`WriteError` naming the file and the cause (e.g. "no
space left on device") and leaves the previous file as it was.

The temporary names carry the writing process's id, so that leftovers of a killed writer (never a running
one) are removed at the next write into the same folder.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from .errors import InputError, WriteError

# Multi-part suffixes that writers recognise by the full ending.
_COMPOUND = (".nii.gz", ".seg.nrrd", ".mrk.json", ".seg.nii.gz")
PARTIAL = ".partial"

Check = Callable[[Path], None]


def full_suffix(path: str | Path) -> str:
    name = Path(path).name.lower()
    for s in _COMPOUND:
        if name.endswith(s):
            return s
    return Path(path).suffix.lower()


def os_cause(e: OSError) -> str:
    """ "no space left on device", "read-only file system", "permission denied" …"""
    return (e.strerror or errno.errorcode.get(e.errno or 0, "") or str(e)).lower()


def folder_problem(folder: Path) -> str:
    """Why writing into ``folder`` fails, found by trying (a writer's own error often hides it: ITK says "failed
    to write image", Slicer's markups writer and SimpleITK's NIfTI writer say nothing on a full disk)."""
    probe = folder / f".write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        return os_cause(e)
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    with contextlib.suppress(OSError):
        if os.statvfs(folder).f_bavail == 0:
            return "no space left on device"
    return ""


def write_error(path: str | Path, e: BaseException) -> WriteError:
    """One line: the file and the cause; the cause found by trying the folder when the writer's error hides it."""
    if isinstance(e, WriteError):
        cause = e.cause
    elif isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EPERM):
        cause = os_cause(e)
    else:
        found = folder_problem(Path(path).parent if str(Path(path).parent) else Path("."))
        cause = found or (os_cause(e) if isinstance(e, OSError) else str(e).strip().splitlines()[-1])
    error = WriteError(f"Cannot write {path}: {cause}; the previous file, if any, is unchanged.")
    error.cause = cause
    return error


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(folder: Path) -> list[Path]:
    """Our temporary files in ``folder`` whose writer is gone (killed mid-write): removed, returned."""
    removed = []
    try:
        candidates = list(folder.glob(f".*{PARTIAL}*"))
    except OSError:
        return removed
    for p in candidates:
        parts = p.name.split(".")
        # .<name>.<pid>-<random>.partial<suffix>
        tag = next((x for x in parts if "-" in x and x.split("-", 1)[0].isdigit()), "")
        if not tag or _pid_alive(int(tag.split("-", 1)[0])):
            continue
        with contextlib.suppress(OSError):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed


def check_complete(path: Path) -> None:
    """The checks every written file gets by its format; raises ValueError when the file is not complete."""
    if not path.exists():
        raise ValueError("the writer produced no file")
    if path.is_dir():
        return
    if path.stat().st_size == 0:
        raise ValueError("the written file is empty")
    suffix = full_suffix(path)
    name = path.name.lower()
    if suffix in (".json", ".mrk.json") or name.endswith(".jsonl"):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines() if name.endswith(".jsonl") else [text]
        for line in lines:
            if line.strip():
                json.loads(line)
    elif name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            while f.read(1 << 20):
                pass
    elif suffix in (".pt", ".zip"):
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            if bad is not None:
                raise ValueError(f"member {bad} is corrupt")
    elif suffix == ".npy":
        np.load(path, mmap_mode="r")
    elif suffix == ".npz":
        with np.load(path) as z:
            for key in z.files:
                z[key]


def _fsync(path: Path) -> None:
    if path.is_dir():
        return
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _temporary(path: Path) -> Path:
    if path.is_dir():
        raise InputError(f"Output {path} is a folder; give a file name.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"Output folder {parent} does not exist; create it first.")
    remove_stale_partials(parent)
    return parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL}{full_suffix(path)}"


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):  # EROFS here must not hide the real error
        if tmp.is_dir():
            shutil.rmtree(tmp)
        elif tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_outputs(paths: list[Path | str], checks: list[Check | None] | None = None) -> Iterator[list[Path]]:
    """Several files that appear all or none: yield one temporary path per target; when the block succeeds and
    every file checks out (:func:`check_complete`, then its ``check``), move them all into place. Otherwise
    remove them, leave every target as it was, and raise :class:`WriteError` naming the file and the cause."""
    targets = [Path(p) for p in paths]
    if len({t.resolve() for t in targets}) != len(targets):
        raise InputError(f"Two outputs name the same file ({', '.join(map(str, targets))}); give different names.")
    checks = checks or [None] * len(targets)
    temps: list[Path] = []
    try:
        temps = [_temporary(t) for t in targets]
        current = targets[0]
        try:
            for target, tmp in zip(targets, temps, strict=True):  # an unwritable folder: said before any work
                current = target
                tmp.touch()
            current = targets[0]
            try:
                yield temps
            except WriteError as e:  # a writer's own atomic write of one of our temporary files: name its target
                named = [t for t, tmp in zip(targets, temps, strict=True) if str(tmp) in str(e)]
                raise write_error(named[0] if named else current, e) from None
            for target, tmp, check in zip(targets, temps, checks, strict=True):
                current = target
                check_complete(tmp)
                if check is not None:
                    check(tmp)
                _fsync(tmp)
            for target, tmp in zip(targets, temps, strict=True):
                current = target
                os.replace(tmp, target)
        except InputError:
            raise
        except (OSError, ValueError, EOFError, RuntimeError, zipfile.BadZipFile) as e:
            raise write_error(current, e) from None
    finally:
        for tmp in temps:
            _remove(tmp)


@contextlib.contextmanager
def atomic_output(path: str | Path, check: Check | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); when the block succeeds and the file checks out
    (:func:`check_complete`, then ``check``), move it into place. Otherwise remove it, leave ``path`` as it
    was, and raise :class:`WriteError` (one line: the file and the cause)."""
    with atomic_outputs([path], [check]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_folder(path: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """A folder of several files that appears all or none: build it under a temporary name beside ``path``,
    then move it into place. ``path`` must not exist, unless ``replace``: then the previous folder is swapped
    out only once the new one is complete. A failure removes what was built and leaves ``path`` as it was."""
    path = Path(path)
    if path.exists() and not (replace and path.is_dir()):
        raise InputError(f"{path} already exists; choose a new folder.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"Output folder {parent} does not exist; create it first.")
    remove_stale_partials(parent)
    tmp = parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL}"
    try:
        try:
            tmp.mkdir()
            yield tmp
            if path.exists():
                old = parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{PARTIAL}.old"
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except InputError:
            raise
        except OSError as e:
            raise write_error(path, e) from None
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                shutil.rmtree(tmp)


def refuse_inputs_as_outputs(outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None]) -> None:
    """No command writes over one of its own inputs, nor into a trained model's folder: refused up front."""
    ins = [Path(p) for p in inputs if p]
    for out in (Path(p) for p in outputs if p):
        for src in ins:
            same = out.resolve() == src.resolve()
            if not same and out.exists() and src.exists():
                with contextlib.suppress(OSError):
                    same = os.path.samefile(out, src)
            if same or (src.is_dir() and out.resolve().is_relative_to(src.resolve())):
                raise InputError(f"Output {out} is one of this command's inputs ({src}); choose another name.")
        folder = out.parent if not out.is_dir() else out
        if (folder / "model.json").is_file() or (folder / "model.pt").is_file():
            raise InputError(
                f"Output {out} is inside the trained model folder {folder}; write it elsewhere (a model's folder "
                "holds only what its own training job wrote)."
            )
