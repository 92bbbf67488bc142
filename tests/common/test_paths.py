"""Local and bucket paths (common.paths) against a real Cloud Storage API on loopback: resolve's
one-line refusals, the mirror's download / upload of changed files only, copies and their order."""

from __future__ import annotations

import os

import pytest
from etils import epath

from common.paths import Mirror, PathError, copy_tree, local_copy, resolve, walk_files


def test_a_local_path_is_made_absolute_and_a_bucket_url_kept(tmp_path, monkeypatch, gcs_bucket):
    monkeypatch.chdir(tmp_path)
    assert resolve("runs/a") == tmp_path / "runs" / "a"
    url = gcs_bucket()
    assert os.fspath(resolve(url)) == url


@pytest.mark.parametrize("url, message", [
    ("http://host/run", r"'http://' is not a storage this code can use; pass a local path or a gs://, s3://, az:// URL"),
    ("az://container/run", r"az:// paths need the 'adlfs' package; pip install -r requirements-cloud.txt"),
])
def test_an_unusable_url_is_one_line(url, message):
    with pytest.raises(PathError, match=message):
        resolve(url, what="--workdir")


def test_the_mirror_downloads_what_is_there_and_uploads_only_what_changed(gcs_bucket):
    target = resolve(gcs_bucket())
    (target / "old").mkdir(parents=True)
    (target / "old" / "kept.txt").write_text("from an earlier run")
    (target / "checkpoints" / "5").mkdir(parents=True)
    (target / "checkpoints" / "5" / "big").write_text("Orbax's, never copied")

    with Mirror(target, skip=("checkpoints",)) as mirror:
        assert (mirror.local / "old" / "kept.txt").read_text() == "from an earlier run"
        assert not (mirror.local / "checkpoints").exists()
        (mirror.local / "new.jsonl").write_text("line 1\n")
        (mirror.local / ".new.jsonl.x1y2").write_text("an atomic write in flight")
        mirror.push()
        assert (target / "new.jsonl").read_text() == "line 1\n"
        assert not (target / ".new.jsonl.x1y2").exists()

        (target / "old" / "kept.txt").write_text("changed on the bucket meanwhile")  # an unchanged file is not re-sent
        with open(mirror.local / "new.jsonl", "a") as f:
            f.write("line 2\n")
        local = mirror.local
    assert (target / "new.jsonl").read_text() == "line 1\nline 2\n", "closing pushes what was left"
    assert (target / "old" / "kept.txt").read_text() == "changed on the bucket meanwhile"
    assert (target / "checkpoints" / "5" / "big").read_text() == "Orbax's, never copied"
    assert not local.exists(), "the local copy of a bucket's workdir is removed"


def test_a_local_target_is_its_own_mirror(tmp_path):
    with Mirror(tmp_path) as mirror:
        assert mirror.local == tmp_path
        (tmp_path / "a.txt").write_text("x")
    assert (tmp_path / "a.txt").read_text() == "x"


def test_copies_put_the_named_files_last_and_every_remote_copy_is_fresh(tmp_path, gcs_bucket):
    source = tmp_path / "mix"
    (source / "sub").mkdir(parents=True)
    for name in ("dataset_info.json", "shard-0", "sub/shard-1"):
        (source / name).write_text(name)
    target = resolve(gcs_bucket()) / "mix"
    copy_tree(source, target, last=("dataset_info.json",))
    uploaded = sorted(os.path.relpath(os.fspath(f), os.fspath(target)) for f in walk_files(target))
    assert uploaded == ["dataset_info.json", "shard-0", "sub/shard-1"]

    copied = local_copy(target)
    assert (copied / "sub" / "shard-1").read_text() == "sub/shard-1"
    (target / "shard-0").write_text("rebuilt")
    assert (local_copy(target) / "shard-0").read_text() == "rebuilt", "every copy is fresh: the bucket may change"
    assert (copied / "shard-0").read_text() == "shard-0", "an earlier copy stays as its readers opened it"
    assert local_copy(source) == source


def test_the_upload_order_of_a_push_puts_the_named_files_last(gcs_bucket, monkeypatch):
    target = resolve(gcs_bucket())
    order = []
    local_class = type(epath.Path("/"))  # the class of the local files the push copies
    copy = local_class.copy

    def recording_copy(self, destination, **kwargs):  # third-party epath, observed, not replaced
        order.append(os.path.basename(os.fspath(destination)))
        return copy(self, destination, **kwargs)

    monkeypatch.setattr(local_class, "copy", recording_copy)
    with Mirror(target, last=("dataset_info.json",)) as mirror:
        for name in ("dataset_info.json", "a-shard", "z-shard"):
            (mirror.local / name).write_text(name)
    assert order[-1] == "dataset_info.json" and sorted(order) == ["a-shard", "dataset_info.json", "z-shard"]
