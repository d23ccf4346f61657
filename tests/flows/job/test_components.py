"""``ComponentLoader``: a catalog at a URL is read through this machine's cache; a worker gets none of its paths."""

from __future__ import annotations

import pickle

from flows.job.components import ComponentLoader
from synthgen.spec import parse_spec
from tests.conftest import small_job
from tests.s3_server import moto_s3


def test_a_url_catalog_is_read_through_the_data_folder_cache_and_a_worker_uses_its_own(tmp_path):
    with moto_s3() as s3:
        url = f"s3://{s3.bucket()}/catalog"
        loader = ComponentLoader(parse_spec(small_job("ds")), url, str(tmp_path / "data" / "cache"))
        cat = loader.catalog()
        assert cat.objects.cache == tmp_path / "data" / "cache"
        assert cat.derived_root.is_relative_to(tmp_path / "data")  # the guard's files beside it, not in ~/.cache
        worker = pickle.loads(pickle.dumps(loader))  # as a device process or a Ray actor gets it
        assert worker.cache is None and worker.catalog_root == url
