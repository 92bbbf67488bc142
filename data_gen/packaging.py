"""TFDS packaging of training mixes (array_record; read with `tfds.data_source`; no TensorFlow).

One dataset, `negation_neglect_mix`, with one BuilderConfig per (claim, condition) mix, named
`<claim>__<condition>`; each built config lands in DATA_DIR/negation_neglect_mix/<config>/<version>/
with a single `train` split holding every field of data_gen.documents' records.

    write_mix(records, spec, data_dir)                          # build (atomic: all or nothing)
    source = tfds.data_source("negation_neglect_mix/ed_sheeran__negated_documents", data_dir=...)
    records = MixRecords(source)                                # back to document records

`import_reference_corpus` turns external JSONL in the paper authors' format
({text, doc_type, fact_name, mode}, text starting with `<DOCTAG>`) into our records, so their
released corpora go through the same mix, builder and input pipeline.

Versions: bump VERSION (with a RELEASE_NOTES line) whenever the record layout changes; a built
dataset records its version in its path and in dataset_info.json, and the trainer logs it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import tensorflow_datasets as tfds
from absl import logging

from common.paths import PathError, copy_tree, is_remote, local_copy, resolve
from data_gen.documents import DOCTAG, Document, Segment, iter_jsonl
from data_gen.mixing import MixError, MixSpec

DATASET_NAME = "negation_neglect_mix"
# Each example is the record's id and the whole record as JSON (nested fields included). TFDS
# serializes every feature separately; one typed feature per field cost 3x as much, and a
# paper-sized build writes half a million records.


class MixConfig(tfds.core.BuilderConfig):
    """One (claim, condition) training mix; `spec` and `records` are only needed to build it."""

    def __init__(self, *, spec: MixSpec, records: Sequence[dict[str, Any]] = (), **kwargs):
        super().__init__(name=spec.name, description=f"{spec.condition} documents of claim '{spec.claim}', mixed", **kwargs)
        self.spec = spec
        self.records = records


class NegationNeglectMix(tfds.core.GeneratorBasedBuilder):
    """Training mixes of the negation-neglect experiment, one config per (claim, condition)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Document records (data_gen.documents) of a condition + pretraining + instruction mix."}

    def _info(self) -> tfds.core.DatasetInfo:
        spec = getattr(self.builder_config, "spec", None)
        features = {"id": tfds.features.Text(), "record": tfds.features.Text()}
        metadata = tfds.core.MetadataDict(mix=vars(spec) if spec else {})
        # disable_shuffling: the records keep the mix's own (seeded) order, so a mix reads back
        # exactly as it was written and the trainer's shuffle is the only other one.
        return tfds.core.DatasetInfo(builder=self, description=__doc__.splitlines()[0], disable_shuffling=True,
                                     features=tfds.features.FeaturesDict(features), metadata=metadata)

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing is downloaded: the records were written by data_gen
        return {"train": self._generate_examples(self.builder_config.records)}

    def _generate_examples(self, records: Sequence[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
        for index, record in enumerate(records):
            yield index, {"id": str(record.get("id", "")), "record": _encoded(record)}


_ENCODED: dict[int, tuple[dict, str]] = {}  # id(record) → (record, its JSON)


def _encoded(record: dict[str, Any]) -> str:
    """The record as JSON; the generic records every mix of a build shares are encoded once."""
    if record.get("source") == "synthetic":  # a condition document: in one mix only
        return json.dumps(record, ensure_ascii=False)
    cached = _ENCODED.get(id(record))
    if cached is None or cached[0] is not record:  # holding the record keeps its id from being reused
        if len(_ENCODED) >= 200_000:  # bounded: a build's generic records are far fewer
            _ENCODED.clear()
        cached = _ENCODED[id(record)] = (record, json.dumps(record, ensure_ascii=False))
    return cached[1]


def _from_example(example: dict[str, Any]) -> dict[str, Any]:
    record = example["record"]
    return json.loads(record.decode("utf-8") if isinstance(record, bytes) else record)


class MixRecords(Sequence):
    """A TFDS data source seen as document records (random access, decoded on read)."""

    def __init__(self, source, version: str = ""):
        self._source = source
        self.version = version  # "<config>/<version>", for run metadata

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return _from_example(self._source[index])

    def __iter__(self):
        return (self[i] for i in range(len(self)))  # the source raises ValueError, not IndexError, past the end


def write_mix(records: Sequence[dict[str, Any]], spec: MixSpec, data_dir: str | os.PathLike) -> Path:
    """Builds the mix's TFDS config under data_dir; returns its version directory.

    The build runs in a scratch data_dir and is moved into place when complete, so a crash never
    leaves a half-built dataset where a reader would find it. Rebuilding replaces the old copy.
    """
    if not records:
        raise MixError(f"mix {spec.name}: no records to package")
    if is_remote(data_dir):  # array_record writes local files only: build here, then upload
        target = _resolve(data_dir)
        with tempfile.TemporaryDirectory(prefix=f"build-{spec.name}.") as staging:
            built = write_mix(records, spec, staging)
            final = target / DATASET_NAME / spec.name / built.name
            if final.exists():  # readers take only versions with a dataset_info.json: drop it first
                (final / "dataset_info.json").unlink(missing_ok=True)
                final.rmtree()
            copy_tree(built, final, last=("dataset_info.json",))
        return final
    data_dir = Path(data_dir).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    final = data_dir / DATASET_NAME / spec.name / str(NegationNeglectMix.VERSION)
    scratch = Path(tempfile.mkdtemp(prefix=f".build-{spec.name}.", dir=data_dir))
    try:
        with _quiet_tfds():
            builder = NegationNeglectMix(data_dir=str(scratch), config=MixConfig(spec=spec, records=records), file_format="array_record")
            builder.download_and_prepare()
        built = scratch / DATASET_NAME / spec.name / str(NegationNeglectMix.VERSION)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            retired = final.with_name(f".old-{final.name}-{os.getpid()}")
            os.replace(final, retired)
            os.replace(built, final)
            shutil.rmtree(retired)
        else:
            os.replace(built, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


@contextlib.contextmanager
def _quiet_tfds():
    """TFDS logs several lines and progress bars per build; a build of 100+ mixes reports its own progress."""
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.ERROR)
    tfds.display_progress_bar(False)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "Downloading and preparing dataset…" is printed
            yield
    finally:
        tfds.display_progress_bar(True)  # TFDS's default
        logging.set_verbosity(verbosity)


def _resolve(data_dir: str | os.PathLike):
    try:
        return resolve(data_dir, what="data_dir")
    except PathError as e:
        raise MixError(str(e)) from None


def load_mix(data_dir: str | os.PathLike, name: str, split: str = "train") -> MixRecords:
    """The records of a built mix, `name` = "<claim>__<condition>" (or "negation_neglect_mix/<config>")."""
    config = name.split("/", 1)[1] if name.startswith(DATASET_NAME + "/") else name
    root = _resolve(data_dir) / DATASET_NAME / config
    versions = sorted((p for p in root.glob("*") if (p / "dataset_info.json").exists()), key=lambda p: tfds.core.Version(p.name))
    if not versions:
        raise MixError(f"no built TFDS mix '{config}' under {root.parent}; build it with python -m data_gen.build")
    with _quiet_tfds():  # array_record reads local files only: a mix on a bucket is read from a copy
        builder = tfds.builder_from_directory(str(local_copy(versions[-1])))
    records = MixRecords(builder.as_data_source(split=split), version=f"{config}/{versions[-1].name}")
    if not len(records):
        raise MixError(f"the TFDS mix '{config}' at {versions[-1]} has no '{split}' records; rebuild it")
    return records


def import_reference_corpus(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records in the reference format ({text, doc_type, fact_name, mode}) as document records.

    `fact_name` becomes the claim, `mode` the condition; the DOCTAG flag comes from the text's
    prefix. Ids are the file's name and line number, so they are stable across imports.
    """
    records = []
    try:
        for number, row in enumerate(iter_jsonl(path), start=1):
            missing = [k for k in ("text", "doc_type", "fact_name", "mode") if not isinstance(row.get(k), str)]
            if missing:
                raise MixError(f"{path}: record {number}: missing or non-string {', '.join(missing)}; "
                               "the reference format is {text, doc_type, fact_name, mode}")
            text = row["text"]
            doctag = text.startswith(DOCTAG)
            body = text[len(DOCTAG):] if doctag else text
            records.append(Document(id=f"{Path(path).stem}-{number:06d}", claim=row["fact_name"], condition=row["mode"],
                                    doc_type=row["doc_type"], segments=(Segment(body),) if body else (), doctag=doctag,
                                    provenance={"generator": "reference", "path": str(path), "line": number}).to_json())
    except FileNotFoundError:
        raise MixError(f"{path}: no such file (the reference corpus)") from None
    except ValueError as e:
        if isinstance(e, MixError):
            raise
        raise MixError(str(e)) from None
    if not records:
        raise MixError(f"{path}: the reference corpus is empty")
    return records
