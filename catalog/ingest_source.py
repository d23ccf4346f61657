"""Where ingest reads real images from: a local folder or any fsspec URL (``s3://bucket/prefix``), one convention.

The class comes from the first folder below the root (``root/<class>/<file>``), like torchvision's
``ImageFolder``; files in folders below a class folder belong to that class. Class ids follow
``root/classes.txt`` (one name per line) when present, else the sorted folder names. Hidden entries
(``.DS_Store``, ``.git``) are not data. Every other file counts: one that is not an image is named by
the ingest rather than silently left out.

A local folder follows symlinks, to files and folders alike (image folders are often built from links
into a shared store); a folder reached twice through links is walked once, and a dangling link is
listed, so the ingest names it. A link to the root or above it is refused, as is a folder that cannot be
listed, and a class name that could not be a folder on export. Only regular files are read
(``synthgen.imaging.read_regular_file``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fsspec

from synthgen.imaging import MAX_FILE_BYTES, ImageReadError, read_regular_file
from synthgen.path_names import component_problem

CLASSES_TXT = "classes.txt"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class IngestError(ValueError):
    """The folder cannot be ingested as it is."""


@dataclass(frozen=True, slots=True)  # slots: a million of them are listed
class SourceFile:
    """One listed file: where it is, its class, and what the listing says of it."""

    rel: str  # POSIX path below the root: the row's ``source_path``
    class_name: str
    class_id: int
    size: int  # bytes as listed; -1 when the listing could not tell (a dangling link)
    stamp: str  # the listing's change marker (mtime, ETag): a changed file changes the staging key
    modified: datetime  # when the file was last written: its row's ``created_at``


def class_names(folders: list[str], listed: str | None, where: str) -> list[str]:
    """The class names in id order: ``classes.txt``'s lines (``listed``) when present, else the sorted ``folders``.

    A ``classes.txt`` must list every class folder: one it leaves out would be dropped without a word.
    """
    folders = sorted(folders)
    if listed is None:
        _check_names(folders, where.rsplit("/", 1)[0])
        return folders
    names = [line.strip() for line in listed.splitlines() if line.strip()]
    bad = [n for n in names if n in (".", "..") or "/" in n or "\\" in n]
    if bad:
        raise IngestError(f"{where}: class names must be sub-folder names, not paths: {bad}")
    _check_names(names, where)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise IngestError(f"{where}: class names listed twice: {dupes}")
    unlisted = [f for f in folders if f not in names]
    if unlisted:
        raise IngestError(f"{where} does not list the class folder(s) {unlisted}: add them to it, "
                          "or move them out of the folder")
    return names


def _check_names(names: list[str], where: str) -> None:
    # Export writes each class as a folder and refuses a name that cannot be one (a control character...),
    # and the card's Markdown tables would break on a newline: refused here, before anything is written.
    for n in names:
        problem = component_problem(n)
        if problem:
            raise IngestError(f"{where}: class name {n!r} {problem}: each class becomes a folder on export, "
                              "so rename its folder (and its line in classes.txt, if listed) to a plain name")


def _text(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8-sig")  # a byte order mark (as Windows Notepad writes) is not part of the first name
    except UnicodeDecodeError:
        raise IngestError(f"{where}: not a text file (one class name per line)") from None


def _check_found(where: str, names: list[str], found: list[SourceFile], empty: list[str], listed: bool) -> None:
    if not found:
        raise IngestError(f"{where}: no images found in its class folders ({', '.join(names[:10])})")
    if empty:
        raise IngestError(f"{where}: class folder(s) with no files: {empty}; add images to them or remove them"
                          + (f" (and their lines in {CLASSES_TXT})" if listed else ""))


class LocalSource:
    """A folder on this machine."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.label = str(self.root.resolve())  # what the manifest records as used
        self._files: list[SourceFile] | None = None

    def where(self, f: SourceFile) -> str:
        return str(self.root / f.rel)

    def files(self) -> list[SourceFile]:
        """Every file of every class folder, in a stable order (class id, then path); listed once."""
        if self._files is None:
            self._files = self._list()
        return self._files

    def _list(self) -> list[SourceFile]:
        root = self.root
        if not root.is_dir():
            raise IngestError(f"{root}: not a folder")
        listed_path = root / CLASSES_TXT
        listed = None
        if listed_path.is_file():
            try:
                listed = _text(read_regular_file(listed_path, 16 << 20), str(listed_path))
            except ImageReadError as exc:
                raise IngestError(str(exc)) from None
        folders = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        names = class_names(folders, listed, str(listed_path))
        if not names:
            raise IngestError(f"{root}: no class sub-folders (expected {root}/<class>/<image>)")
        found, empty = [], []
        for cid, name in enumerate(names):
            folder = root / name
            if not folder.is_dir():
                raise IngestError(f"{listed_path} lists {name!r} but {folder} is missing")
            paths = class_files(folder)
            found += [self._entry(p, name, cid) for p in paths]
            if not paths:
                empty.append(name)
        _check_found(str(root), names, found, empty, listed is not None)
        return found

    def _entry(self, path: Path, name: str, cid: int) -> SourceFile:
        rel = path.relative_to(self.root).as_posix()
        try:
            st = path.stat()  # follows links: the bytes stored are the target's
        except OSError:
            return SourceFile(rel, name, cid, -1, "missing", _EPOCH)
        modified = _EPOCH + timedelta(microseconds=st.st_mtime_ns // 1000)  # exact: the column holds microseconds
        return SourceFile(rel, name, cid, st.st_size, f"{st.st_mtime_ns}:{st.st_ino}", modified)

    def read(self, f: SourceFile) -> bytes:
        """The file's bytes; ``ImageReadError`` naming it when it is not a readable regular file."""
        return read_regular_file(self.root / f.rel)


def class_files(folder: Path) -> list[Path]:
    """Every file under a class folder, sub-folders included (as torchvision's ``ImageFolder`` does).

    Symlinks are followed, to files and folders alike, wherever they point. A dangling link is
    kept, so ingest names it as a bad file instead of leaving it out. Hidden entries are not data;
    a folder reached twice through links is walked once. ``IngestError`` for a folder that cannot
    be listed (rather than fewer images without a word) and for a link to the ingest root or a
    folder above it (``folder``'s parent is the root), which would put every class into this one.
    """
    found: list[Path] = []
    seen: set[str] = set()
    above = _holders(folder)
    if os.path.realpath(folder) in above:  # the class folder itself a link to the root (or above)
        raise _pulls_root(str(folder), folder)
    for top, dirs, files in os.walk(folder, followlinks=True, onerror=_unlistable):
        real = os.path.realpath(top)
        if real in seen:  # a link back up the tree: walking it again would never end
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for d in dirs:
            link = os.path.join(top, d)
            if os.path.islink(link) and os.path.realpath(link) in above:
                raise _pulls_root(link, folder)
        found += [Path(top) / f for f in files if not f.startswith(".")]
    return sorted(found)


def _holders(folder: Path) -> set[str]:
    """The resolved ingest root (``folder``'s parent) and every folder above it or above ``folder`` itself."""
    held = set()
    for start in (os.path.realpath(folder.parent), os.path.dirname(os.path.realpath(folder))):
        path = start
        while True:
            held.add(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
    return held


def _pulls_root(link: str, folder: Path) -> IngestError:
    return IngestError(f"{link}: a link to {os.path.realpath(link)}, the ingest folder {folder.parent} or a folder "
                       f"above it: following it would file every class under {folder.name!r}; remove the link or "
                       "point it elsewhere")


def _unlistable(exc: OSError) -> None:
    raise IngestError(f"{exc.filename}: cannot list the folder ({exc.strerror or exc}); its images would be "
                      "left out") from None


class UrlSource:
    """A prefix on any fsspec store (``s3://bucket/prefix``, ``gs://``, ``memory://``...), read object by object."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self.label = url.rstrip("/")
        options = dict(storage_options or {})
        if fsspec.utils.get_protocol(url) == "s3":
            options.setdefault("skip_instance_cache", True)  # no listing of another endpoint's bucket
            options.setdefault("use_listings_cache", False)
        try:
            self.fs, self.root = fsspec.url_to_fs(url, **options)
        except (ImportError, ValueError, TypeError) as exc:
            raise IngestError(f"cannot open {url}: {exc}") from None
        self.root = self.root.rstrip("/")
        self._files: list[SourceFile] | None = None

    def where(self, f: SourceFile) -> str:
        return f"{self.label}/{f.rel}"

    def files(self) -> list[SourceFile]:
        """Every object of every class prefix, in a stable order (class id, then key); listed once."""
        if self._files is None:
            self._files = self._list()
        return self._files

    def _list(self) -> list[SourceFile]:
        try:
            listing = self.fs.find(self.root, detail=True, withdirs=False)
        except FileNotFoundError:
            raise IngestError(f"{self.label}: no such bucket or prefix") from None
        except PermissionError as exc:
            raise IngestError(f"{self.label}: access denied ({exc})") from None
        except OSError as exc:
            raise IngestError(f"{self.label}: cannot list it ({exc})") from None
        by_class: dict[str, list[tuple[str, dict]]] = {}
        listed = None
        for path, info in listing.items():
            rel = path[len(self.root):].lstrip("/")
            parts = rel.split("/")
            if not rel or rel.endswith("/") or any(p.startswith(".") for p in parts):
                continue
            if len(parts) == 1:
                if rel == CLASSES_TXT:
                    if info.get("size", 0) > 16 << 20:
                        raise IngestError(f"{self.label}/{CLASSES_TXT}: too large for a list of class names")
                    listed = _text(self.fs.cat_file(path), f"{self.label}/{CLASSES_TXT}")
                continue  # files beside the class folders are not in a class
            by_class.setdefault(parts[0], []).append((rel, info))
        if not by_class and listed is None:
            raise IngestError(f"{self.label}: no class sub-folders (expected {self.label}/<class>/<image>)")
        names = class_names(list(by_class), listed, f"{self.label}/{CLASSES_TXT}")
        found, empty = [], []
        for cid, name in enumerate(names):
            entries = sorted(by_class.get(name, []), key=lambda e: e[0])
            found += [self._entry(rel, info, name, cid) for rel, info in entries]
            if not entries:
                empty.append(name)
        _check_found(self.label, names, found, empty, listed is not None)
        return found

    @staticmethod
    def _entry(rel: str, info: dict, name: str, cid: int) -> SourceFile:
        modified = info.get("LastModified") or info.get("mtime") or info.get("created")
        if isinstance(modified, (int, float)):
            modified = datetime.fromtimestamp(modified, timezone.utc)
        elif isinstance(modified, str):
            modified = datetime.fromisoformat(modified)
        modified = modified or _EPOCH
        modified = (modified if modified.tzinfo else modified.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)
        stamp = f"{info.get('ETag') or info.get('etag') or ''}:{modified.isoformat()}"
        return SourceFile(rel, name, cid, int(info.get("size") or 0), stamp, modified)

    def read(self, f: SourceFile) -> bytes:
        """The object's bytes; ``ImageReadError`` naming its URL when it cannot be read or is too large."""
        where = self.where(f)
        if f.size > MAX_FILE_BYTES:
            raise ImageReadError(f"{where}: {f.size:,} bytes, more than the limit of {MAX_FILE_BYTES:,} for one image")
        try:
            return self.fs.cat_file(f"{self.root}/{f.rel}")
        except (OSError, ValueError) as exc:
            raise ImageReadError(f"{where}: cannot read it ({exc})") from None


Source = LocalSource | UrlSource


def open_source(where: str | Path, storage_options: dict[str, Any] | None = None) -> Source:
    """The source a path or URL names: a ``LocalSource`` for a path or ``file://``, else a ``UrlSource``."""
    text = str(where)
    if "://" in text and not text.startswith("file://"):
        return UrlSource(text, storage_options)
    return LocalSource(Path(text.removeprefix("file://")))
