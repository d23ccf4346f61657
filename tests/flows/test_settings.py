from flows.settings import Settings


def test_settings_read_the_environment_once_and_travel_as_a_plain_dict(monkeypatch):
    monkeypatch.setenv("SYNTHGEN_SHARD_RETRIES", "1")
    monkeypatch.setenv("SYNTHGEN_RETRY_DELAYS", "0.5, 3")
    monkeypatch.setenv("SYNTHGEN_PUBLISH_URL", "s3://bucket/shared")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    s = Settings()
    assert (s.shard_retries, s.retry_delays, s.publish_url, s.tracking_uri) == (1, [0.5, 3.0], "s3://bucket/shared",
                                                                                 "sqlite:///elsewhere.db")
    as_param = s.model_dump(mode="json")  # how a deployment or a shard flow run carries it
    monkeypatch.setenv("SYNTHGEN_SHARD_RETRIES", "7")  # another worker's environment
    monkeypatch.delenv("SYNTHGEN_PUBLISH_URL")
    assert Settings.model_validate(as_param) == s  # the carried values win over the worker's
    assert Settings().shard_retries == 7 and Settings().publish_url is None


def test_paths_carry_the_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    p = Settings(artifact_root="s3://b/mlflow").paths(tmp_path)
    assert p.root == tmp_path.resolve() and p.artifact_root == "s3://b/mlflow"
    assert p.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow' / 'mlflow.db'}"
