import pytest

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


def test_an_empty_data_folder_value_is_an_error_not_the_current_directory(tmp_path, monkeypatch):
    import pytest

    from flows.settings import DataFolderError, resolve_data_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNTHGEN_DATA", "")
    assert Settings().data is None  # not Path(""), which is the current directory
    with pytest.raises(DataFolderError, match=r"\$SYNTHGEN_DATA is set but empty"):
        Settings().paths()
    with pytest.raises(DataFolderError, match="--data-dir is empty"):
        resolve_data_dir("  ")
    assert resolve_data_dir(tmp_path / "d") == tmp_path / "d"  # an option wins over the empty variable
    monkeypatch.delenv("SYNTHGEN_DATA")
    assert resolve_data_dir() == tmp_path / "synthgen-data"
    assert list(tmp_path.iterdir()) == []


def test_configure_for_a_reader_refuses_a_folder_without_a_catalog_and_creates_nothing(tmp_path):
    import pytest

    from flows.settings import DataFolderError, configure

    with pytest.raises(DataFolderError, match="nodata does not exist"):
        configure(tmp_path / "nodata", create=False)
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataFolderError, match="plain holds no catalog/"):
        configure(tmp_path / "plain", create=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):  # named as when creating it: "cannot hold the data folder"
        configure(tmp_path / "file", create=False)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file", "plain"]
    paths = configure(tmp_path / "new")  # a writer starts it
    assert configure(tmp_path / "new", create=False) == paths


def test_the_catalog_is_the_data_folders_unless_named(tmp_path, monkeypatch):
    from pydantic import ValidationError

    from flows.settings import CATALOG_ENV

    monkeypatch.delenv(CATALOG_ENV, raising=False)
    assert Settings().paths(tmp_path).catalog == tmp_path / "catalog"
    at_url = Settings(catalog="s3://team/catalog/").paths(tmp_path)
    assert at_url.catalog == "s3://team/catalog" and at_url.catalog_is_url
    assert at_url.cache == tmp_path / "cache"
    monkeypatch.setenv(CATALOG_ENV, str(tmp_path / "elsewhere"))
    assert Settings().paths(tmp_path).catalog == tmp_path / "elsewhere"
    monkeypatch.setenv(CATALOG_ENV, "file://" + str(tmp_path / "shared"))
    assert Settings().paths(tmp_path).catalog == tmp_path / "shared"
    monkeypatch.setenv(CATALOG_ENV, " ")
    with pytest.raises(ValidationError, match="SYNTHGEN_CATALOG"):
        Settings()
