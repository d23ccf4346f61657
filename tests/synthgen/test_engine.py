import threading

import numpy as np

from synthgen.engine import run_samples
from synthgen.generators import load_generator
from synthgen.imaging import array_to_pil, decode, pixel_sha256
from synthgen.plan import make_plan
from synthgen.spec import GeneratorSpec, parse_spec
from tests.conftest import small_job


def test_run_samples_fills_every_stage_in_plan_order(embedder):
    spec = parse_spec(small_job(per_class=7))  # 21 samples, batch 8: last batch padded
    gen = load_generator(GeneratorSpec(scheduler="dpm++2m", steps=3, batch_size=8), "class", [0, 1, 7])
    plan = make_plan(spec)
    finished_in = set()
    original = embedder.embed_images

    def spy(images):
        finished_in.add(threading.current_thread().name)
        return original(images)

    embedder.embed_images = spy
    try:
        seen = []
        stats = run_samples(plan, gen, embedder, caption=lambda s: f"a handwritten digit {s.class_name}",
                            on_batch=seen.append)
    finally:
        embedder.embed_images = original
    assert stats.images == 21 and seen == [8, 8, 5]
    assert all(name.startswith("synthgen-finish") for name in finished_in)  # CPU work off the main thread
    for s in plan:
        assert decode(s.png).size == (16, 16) and s.image_sha256 == pixel_sha256(decode(s.png))
        assert s.embedding.shape == (embedder.dim,) and abs(np.linalg.norm(s.embedding) - 1) < 1e-4
        assert -1 <= s.clip_score <= 1 and s.created_at is not None
    # the output of each sample equals what the generator makes for it alone
    alone = gen.generate([plan[20]])[0]
    assert pixel_sha256(decode(plan[20].png)) == pixel_sha256(array_to_pil(alone))
