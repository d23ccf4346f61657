"""Real-image guidance's sources, read inside the catalog: a job's init images and what they make restricted.

A job with ``conditioning.init_images`` starts each sample from a real row of
its class. Those rows are read here without the access check (like the
memorisation guard's thumbnails): what is made from them goes into a
dataset that is restricted whenever the source is (``derived_restricted``),
so nothing of a restricted image leaves through the job. Releasing such a
dataset is an explicit, recorded decision (``catalog.release``).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from catalog.errors import CatalogError
from catalog.store import Catalog
from catalog.version import open_version, read_rows
from synthgen.init_images import WHOLE_SET, InitImages
from synthgen.spec import InitImagesSpec, JobSpec, SpecError

__all__ = ["check_init_images", "derived_restricted", "init_source", "init_version", "load_init_images",
           "needed_classes"]


def init_version(catalog: Catalog, init: InitImagesSpec) -> int:
    """The real dataset's version the job starts from (the spec's, else the head); ``CatalogError`` if none."""
    where = "conditioning.init_images.dataset"
    if not catalog.exists(init.name):
        known = ", ".join(catalog.names()) or "none"
        raise CatalogError(f"{where}: no dataset {init.name!r} (known: {known})")
    info = catalog.info(init.name)
    if info["origin"] != "real":
        raise CatalogError(f"{where}: {init.name!r} is a {info['origin']} dataset, not a real one")
    head = catalog.head(init.name)
    if head is None:
        raise CatalogError(f"{where}: {init.name!r} has no versions yet")
    if init.version is not None and init.version > head:
        raise CatalogError(f"{where}: {init.name!r} has no version {init.version} (head is {head})")
    return init.version or head


def needed_classes(spec: JobSpec) -> list[str]:
    """The real class names (``label_name``) the job draws from; ``WHOLE_SET`` for prompts with no mapped class."""
    cond, init = spec.conditioning, spec.conditioning.init_images
    if cond.classes is not None:
        return [c.name for c in cond.classes]
    mapping = (init.classes if init else None) or {}
    names = list(dict.fromkeys(mapping[p] for p in cond.prompts or [] if p in mapping))
    return names + ([WHOLE_SET] if any(p not in mapping for p in cond.prompts or []) else [])


def _class_counts(catalog: Catalog, ref: str) -> dict[str, int]:
    t = read_rows(open_version(catalog, ref, allow_restricted=True), ["label_name"], "kept", None)
    counts = pc.value_counts(t["label_name"]).to_pylist()
    return {c["values"]: c["counts"] for c in counts if c["values"] is not None} | {WHOLE_SET: t.num_rows}


def derived_restricted(catalog: Catalog, spec: JobSpec) -> bool:
    """Whether the job's rows derive from a restricted real dataset (its output must then be restricted)."""
    init = spec.conditioning.init_images
    return bool(init and catalog.exists(init.name) and catalog.info(init.name).get("restricted"))


def check_init_images(catalog: Catalog, spec: JobSpec) -> None:
    """Everything about ``init_images`` checkable before a model loads; ``CatalogError`` naming the problem.

    The dataset and version exist and are real; every class the job draws
    from has rows there (class-conditioned jobs match by class *name*); rows
    from a restricted set do not go into an existing unrestricted dataset.
    """
    init = spec.conditioning.init_images
    if init is None:
        return
    steps = spec.generator.steps
    if int(steps * init.strength) < 1:  # diffusers' img2img refuses to denoise no step (it would return the real image)
        raise SpecError(f"conditioning.init_images.strength {init.strength} with generator.steps {steps} denoises "
                        f"int({steps} x {init.strength}) = 0 steps; raise the strength or the steps")
    ref = f"{init.name}@{init_version(catalog, init)}"
    counts = _class_counts(catalog, ref)
    empty = [c for c in needed_classes(spec) if not counts.get(c)]
    if empty:
        have = ", ".join(sorted(c for c in counts if c)) or "none"
        what = "the whole set" if empty == [WHOLE_SET] else ", ".join(repr(c) for c in empty if c)
        raise CatalogError(f"conditioning.init_images: {ref} has no rows of {what} (its classes: {have}); "
                           "classes are matched by name")
    out = spec.output.dataset
    if derived_restricted(catalog, spec) and catalog.exists(out) and not catalog.info(out).get("restricted"):
        raise CatalogError(f"output.dataset: {out!r} is not restricted, but its new rows would derive from the "
                           f"restricted {init.name!r}; write them to a new dataset (it is created restricted)")


def load_init_images(catalog: Catalog, spec: JobSpec) -> InitImages | None:
    """The job's init images (the rows of the classes it draws from), or None for a job from noise."""
    init = spec.conditioning.init_images
    if init is None:
        return None
    check_init_images(catalog, spec)
    version = init_version(catalog, init)
    classes = needed_classes(spec)
    t = read_rows(open_version(catalog, f"{init.name}@{version}", allow_restricted=True),
                  ["sample_id", "label_name", "image"], "kept", None)
    if WHOLE_SET not in classes:
        t = t.filter(pc.is_in(t["label_name"], value_set=pa.array(classes, pa.string())))
    ids, labels = t["sample_id"].to_pylist(), t["label_name"].to_pylist()
    images = [im["bytes"] for im in t["image"].to_pylist()]
    pools: dict[str, list[str]] = {}
    for sid, label in zip(ids, labels):
        pools.setdefault(label, []).append(sid)
    if WHOLE_SET in classes:
        pools[WHOLE_SET] = list(ids)
    mapping = init.classes or {}
    return InitImages(init.name, version, init.strength, {k: sorted(v) for k, v in pools.items()},
                      dict(zip(ids, images)), dict(mapping))


def init_source(catalog: Catalog, row: dict, allow_restricted: bool = False) -> dict | None:
    """The lineage of a row's init image (real-image guidance): its dataset, version, class and source path.

    None for a row made from noise. The source file's path of a restricted real
    set is shown only with ``allow_restricted`` (its id and class are in the row already).
    """
    sid, name, version = row.get("init_image_id"), row.get("init_dataset"), row.get("init_version")
    if not sid or not name:
        return None
    out = {"dataset": name, "version": version, "sample_id": sid}
    if not catalog.exists(name):
        return out | {"found": False}
    version_ = open_version(catalog, f"{name}@{version}", allow_restricted=True)
    t = read_rows(version_, ["sample_id", "label_name", "source_path", "image_sha256"], "kept", None)
    hit = t.filter(pc.equal(t["sample_id"], sid)).to_pylist()
    if not hit:
        return out | {"found": False}
    found = {"found": True, "class": hit[0]["label_name"], "image_sha256": hit[0]["image_sha256"],
             "source_path": hit[0]["source_path"]}
    if catalog.info(name).get("restricted") and not allow_restricted:
        found["source_path"] = "(withheld: restricted dataset; --allow-restricted shows it)"
    return out | found
