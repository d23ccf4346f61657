import numpy as np
import pyarrow as pa

from catalog.schema import COLUMNS, DECISION_COLUMNS, SCHEMA, samples_from_table, samples_to_table, write_decisions
from synthgen.records import DUPLICATE
from tests.conftest import make_samples


def test_schema_and_table_follow_the_one_column_declaration():
    assert SCHEMA.names == [c.name for c in COLUMNS]
    t = samples_to_table(make_samples(3), embedding_model="m")
    assert t.schema.equals(SCHEMA, check_metadata=True)
    assert t["label"].to_pylist() == [0, 1, 2] and t["embedding_model"].to_pylist() == ["m"] * 3
    assert t["job_name"].null_count == 3  # no Provenance: per-run columns are null


def test_stored_rows_read_back_as_samples_and_decisions_rewrite_only_their_columns():
    made = make_samples(4)
    t = samples_to_table(made)
    back = samples_from_table(t)
    assert [s.sample_id for s in back] == [s.sample_id for s in made] and back[2].class_id == 2
    assert np.allclose(np.stack([s.embedding for s in back]), np.stack([s.embedding for s in made]))
    for s in back:
        s.status, s.drop_reason, s.nn_id, s.nn_similarity = DUPLICATE, "why", "x", 0.5
    out = write_decisions(t, back)
    assert out["status"].to_pylist() == [DUPLICATE] * 4 and out["nn_similarity"].type == pa.float32()
    untouched = [c.name for c in COLUMNS if c not in DECISION_COLUMNS]
    assert out.select(untouched).equals(t.select(untouched))
