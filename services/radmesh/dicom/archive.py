"""Unpacking a .zip of DICOM files safely: no path traversal, no zip bombs.

Members are written under generated flat names (``000001.dcm`` …) inside a
folder the caller owns, so no member name ever becomes a path; names that try
to leave the archive (``../x``, ``/etc/x``, ``C:\\x``) are refused outright all
the same, since an archive carrying them was not made by a scanner or a PACS.
The uncompressed size is capped twice: on the sizes the archive declares, before
anything is written, and on the bytes actually inflated, while writing (a
crafted archive can declare small sizes and inflate to more).
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from radmesh.common.errors import InvalidInputError, ResourceExhaustedError

__all__ = ["DEFAULT_MAX_UNCOMPRESSED_BYTES", "MAX_MEMBERS", "extract_zip", "max_uncompressed_bytes"]

#: Default cap on what a DICOM .zip may unpack to: 4 GiB (a 2 GiB volume — the
#: transport's limit — plus headers, with room to spare). RADMESH_MAX_DICOM_ZIP_MB overrides.
DEFAULT_MAX_UNCOMPRESSED_BYTES = 4 << 30
#: Most members a DICOM .zip may hold (a 2,000-slice series is large; 100,000 is absurd).
MAX_MEMBERS = 100_000
_CHUNK = 1 << 20


def max_uncompressed_bytes() -> int:
    """The cap in force: RADMESH_MAX_DICOM_ZIP_MB (MiB) if set, else the default."""
    raw = os.environ.get("RADMESH_MAX_DICOM_ZIP_MB", "").strip()
    if not raw:
        return DEFAULT_MAX_UNCOMPRESSED_BYTES
    try:
        mb = float(raw)
    except ValueError:
        raise InvalidInputError(f"RADMESH_MAX_DICOM_ZIP_MB must be a number of MiB, got {raw!r}") from None
    if not mb > 0:
        raise InvalidInputError(f"RADMESH_MAX_DICOM_ZIP_MB must be positive, got {raw!r}")
    return int(mb * (1 << 20))


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _check_name(archive: Path, name: str) -> None:
    posix = name.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if posix.startswith("/") or ".." in parts or (len(posix) > 1 and posix[1] == ":") or "\x00" in posix:
        raise InvalidInputError(
            f"{archive}: member {name!r} points outside the archive (path traversal); the zip is refused")


def extract_zip(archive: str | os.PathLike, dest: str | os.PathLike,
                max_bytes: int | None = None) -> list[Path]:
    """Unpack the regular files of ``archive`` into ``dest`` under flat generated names.

    Returns the written paths. Raises InvalidInputError for a file that is not a
    readable zip, a corrupt member, an encrypted member or a traversing member
    name; ResourceExhaustedError when the members (declared or inflated) exceed
    ``max_bytes`` (default :func:`max_uncompressed_bytes`) or number more than
    :data:`MAX_MEMBERS`. On error nothing is left in ``dest`` by this call.
    """
    src, out = Path(archive), Path(dest)
    limit = max_uncompressed_bytes() if max_bytes is None else int(max_bytes)
    try:
        zf = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
        raise InvalidInputError(f"{src}: not a readable zip archive ({e})") from None
    written: list[Path] = []
    try:
        with zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if len(infos) > MAX_MEMBERS:
                raise ResourceExhaustedError(
                    f"{src}: holds {len(infos)} files, more than the {MAX_MEMBERS} a DICOM archive may hold")
            for info in infos:
                _check_name(src, info.filename)
            declared = sum(i.file_size for i in infos)
            if declared > limit:
                raise ResourceExhaustedError(
                    f"{src}: unpacks to {_mib(declared)}, more than the {_mib(limit)} limit "
                    "(a zip bomb, or set RADMESH_MAX_DICOM_ZIP_MB)")
            out.mkdir(parents=True, exist_ok=True)
            total = 0
            for n, info in enumerate(infos, start=1):
                if info.flag_bits & 0x1:
                    raise InvalidInputError(f"{src}: member {info.filename!r} is encrypted; give an unencrypted zip")
                if stat.S_ISLNK(info.external_attr >> 16):
                    continue  # a symbolic link is never a DICOM file; it is not followed or written
                target = out / f"{n:06d}.dcm"
                with zf.open(info) as fin, open(target, "wb") as fout:
                    written.append(target)
                    while True:
                        chunk = fin.read(_CHUNK)
                        if not chunk:
                            break
                        total += len(chunk)
                        if total > limit:
                            raise ResourceExhaustedError(
                                f"{src}: inflates to more than the {_mib(limit)} limit "
                                "(a zip bomb, or set RADMESH_MAX_DICOM_ZIP_MB)")
                        fout.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        _remove(written)
        raise InvalidInputError(f"{src}: corrupt zip archive ({e})") from None
    except BaseException:
        _remove(written)
        raise
    return written


def _remove(paths: list[Path]) -> None:
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass
