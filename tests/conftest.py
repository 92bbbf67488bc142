"""Suite-wide test set-up: 8 fake CPU devices, so every sharding test runs on a real mesh."""

import os

# Must happen before jax is first imported anywhere in the test process.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()


import pytest  # noqa: E402 - after the XLA flags, which must be set before anything imports jax


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory):
    """case → (a tiny random transformers model, the directory it was saved to); each built once per session."""
    from tests.nn_train.hf_oracle import build_hf_model

    built = {}

    def get(case: str):
        if case not in built:
            model = build_hf_model(case)
            directory = tmp_path_factory.mktemp(case)
            model.save_pretrained(directory)
            built[case] = (model, directory)
        return built[case]

    return get


@pytest.fixture(scope="session")
def gcs_bucket():
    """A real Cloud Storage API on loopback (gcp-storage-emulator, in memory), with gcsfs, Orbax's
    tensorstore and google-cloud-storage pointed at it; yields a factory of fresh gs:// prefixes."""
    import itertools
    import logging
    import socket

    from gcp_storage_emulator import server as emulator
    from gcp_storage_emulator.handlers import objects

    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)  # one INFO line per request
    # Real Cloud Storage sends an object's generation with its bytes (x-goog-generation); the emulator
    # does not, and tensorstore (Orbax's OCDBT) then reads generation 0 and, when a read-back is not
    # served from its cache, fails a checkpoint with "Malformed StorageGen". Send what GCS sends.
    plain_download = objects.download

    def download(request, response, storage, *args, **kwargs):
        plain_download(request, response, storage, *args, **kwargs)
        try:
            resource = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        except Exception:  # noqa: BLE001 - a missing object: the 404 is already set
            return
        response["x-goog-generation"] = resource["generation"]
        response["x-goog-metageneration"] = resource["metageneration"]

    objects.download = download  # what objects.get (?alt=media) calls
    for _, methods in emulator.HANDLERS:  # the download routes hold the function itself
        for method, handler in list(methods.items()):
            if handler is plain_download:
                methods[method] = download
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket="bucket")
    server.start()
    # Clients that hang up early make the emulator print a BrokenPipe traceback per request; not ours.
    server._api._httpd.handle_error = lambda request, client_address: None
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL", "GOOGLE_AUTH_TOKEN_FOR_TESTING")}
    os.environ.update(STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url, GOOGLE_AUTH_TOKEN_FOR_TESTING="test")
    counter = itertools.count()
    yield lambda name="run": f"gs://bucket/{name}-{next(counter)}"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
