"""MLflow's warm-up: it opens the store only after what it is told to wait for."""

import threading

from flows.tracking import warm_up


def test_the_store_opens_only_after_what_the_warm_up_waits_for(tmp_path):
    db = tmp_path / "mlflow.db"
    uri, root = f"sqlite:///{db}", str(tmp_path / "artifacts")
    gate = threading.Event()
    opened = warm_up(uri, root, after=lambda: gate.wait(60))
    assert not db.exists()  # the gate is shut: nothing was opened
    gate.set()
    opened.join(120)
    assert db.exists() and db.stat().st_size > 0  # then the store was created

    def refuse():
        raise RuntimeError("Prefect's classes never came")

    warm_up(f"sqlite:///{tmp_path / 'other.db'}", root, after=refuse).join(60)
    assert not (tmp_path / "other.db").exists()  # an error is left for the run's own Tracker
