"""The checks a job passes before anything loads or starts: catalog references, model configs, devices.

Kept apart from ``flows.generate`` (which imports Prefect) so that ``synthgen
run``/``schedule`` report a bad reference or model without importing Prefect,
MLflow or torch: a failing command answers in well under a second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from catalog.errors import CatalogError
from catalog.init_source import check_init_images
from flows.executors.ray_address import check_address, check_engine
from synthgen.device_check import check_devices
from synthgen.model_check import check_job_models

if TYPE_CHECKING:
    from catalog import Catalog
    from synthgen.spec import JobSpec


def preflight(spec: JobSpec, catalog: Catalog, shard_pool: str | None = None, ray_address: str | None = None) -> None:
    """Check catalog references, the models' config files, the devices and the shard engine before any model loads.

    ``shard_pool``: the work pool whose workers sample (``Settings.shard_pool``); ``ray_address``: the Ray
    cluster whose actors do (``Settings.ray_address``; ray installed, the address well formed and answering).
    Either way the generator's devices are theirs, not this machine's, and only the embedder's device is
    checked here. Both at once are refused.
    """
    check_engine(shard_pool, ray_address)
    if ray_address:
        check_address(ray_address)
    if spec.dedup.real_dataset:
        info = catalog.info(spec.dedup.real_dataset)  # raises with the known names
        if info["origin"] != "real":
            raise CatalogError(f"dedup.real_dataset: {spec.dedup.real_dataset!r} is a {info['origin']} dataset")
        if catalog.head(spec.dedup.real_dataset) is None:
            raise CatalogError(f"dedup.real_dataset: {spec.dedup.real_dataset!r} has no versions yet")
    if catalog.exists(spec.output.dataset) and catalog.info(spec.output.dataset)["origin"] != "synthetic":
        raise CatalogError(f"output.dataset: {spec.output.dataset!r} is a real dataset")
    check_init_images(catalog, spec)  # the real dataset, version and classes init images come from
    check_job_models(spec)  # config files only; deployments reach the flow without the CLI's checks
    check_devices(spec, generator_here=not (shard_pool or ray_address))
