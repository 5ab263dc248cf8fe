"""Corrupt records and missing features: skipped, counted and warned about; strict mode raises."""

from __future__ import annotations

import shutil
import struct

import pytest

from vap_env.data import CorruptRecordError, CorruptRecordWarning, iter_episodes, open_rlds

TRAIN = "fractal20220817_data-train.tfrecord-00000-of-00001"
VAL = "fractal20220817_data-val.tfrecord-00000-of-00001"


@pytest.fixture
def copy(rt1_dataset_dir, tmp_path):
    dst = tmp_path / "fractal20220817_data" / "0.1.0"
    shutil.copytree(rt1_dataset_dir, dst)
    return dst


def _record_offsets(data: bytes) -> list[int]:
    """Byte offset of each record's payload (TFRecord framing: u64 length, u32 crc, data, u32 crc)."""
    offsets, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        offsets.append(pos + 12)
        pos += 12 + length + 4
    return offsets


def test_corrupt_record_is_skipped_counted_and_named(copy) -> None:
    shard = copy / TRAIN
    data = bytearray(shard.read_bytes())
    offsets = _record_offsets(bytes(data))
    assert len(offsets) == 3
    data[offsets[1] + 100] ^= 0xFF  # flip a byte inside record 1: its checksum no longer matches
    shard.write_bytes(bytes(data))

    ds = open_rlds(copy)
    with pytest.warns(CorruptRecordWarning) as caught:
        episodes = list(ds.episodes("train"))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and f"{TRAIN}, record 1, feature '<record>'" in messages[0]
    assert "corrupted record at" in messages[0]
    assert [e.episode_id for e in episodes] == ["train_000000"]
    # The TFRecord framing cannot be re-synchronised: records 1 and 2 of the shard are lost.
    assert ds.num_skipped == 2 and [s.record for s in ds.skipped] == [1, 2]
    assert len(list(open_rlds(copy).episodes("val"))) == 1  # other splits unaffected

    with pytest.raises(CorruptRecordError, match=rf"{TRAIN}, record 1.*strict"):
        list(iter_episodes(copy, "train", strict=True))


def test_missing_feature_is_named(copy) -> None:
    import tensorflow as tf

    shard = copy / VAL
    raw = next(iter(tf.data.TFRecordDataset(str(shard)).as_numpy_iterator()))
    example = tf.train.Example.FromString(raw)
    del example.features.feature["steps/observation/base_pose_tool_reached"]
    with tf.io.TFRecordWriter(str(shard)) as writer:
        writer.write(example.SerializeToString())

    ds = open_rlds(copy)
    with pytest.warns(
        CorruptRecordWarning,
        match=rf"{VAL}, record 0, feature 'steps/observation/base_pose_tool_reached'",
    ):
        assert list(ds.episodes("val")) == []
    assert (
        ds.num_skipped == 1 and ds.skipped[0].feature == "steps/observation/base_pose_tool_reached"
    )
    with pytest.raises(CorruptRecordError, match="missing feature"):
        list(iter_episodes(copy, "val", strict=True))


def test_truncated_and_missing_shards(copy) -> None:
    shard = copy / TRAIN
    data = shard.read_bytes()
    shard.write_bytes(data[: _record_offsets(data)[2] + 50])  # cut inside the last record
    ds = open_rlds(copy)
    with pytest.warns(CorruptRecordWarning, match="record 2"):
        assert len(list(ds.episodes("train"))) == 2
    assert ds.num_skipped == 1

    (copy / VAL).unlink()
    ds = open_rlds(copy)
    with pytest.warns(CorruptRecordWarning, match="shard file is missing"):
        assert list(ds.episodes("val")) == []
    assert ds.num_skipped == 1


def test_damaged_metadata_and_ground_truth_name_their_file(copy) -> None:
    gt = copy / "ground_truth" / "val" / "val_000000.npz"
    assert gt.is_file()
    gt.write_bytes(b"not a zip file")
    with pytest.warns(
        CorruptRecordWarning, match=r"ground-truth file .*val_000000\.npz is unreadable"
    ):
        assert list(open_rlds(copy).episodes("val")) == []
    with pytest.raises(TypeError, match="split must be a split name"):
        list(iter_episodes(copy, 3))
    with pytest.raises(TypeError, match="data_dir must be a path"):
        list(iter_episodes(None))
    (copy / "dataset_info.json").write_text("{ not json")
    with pytest.raises(ValueError, match=r"cannot open .*0\.1\.0 as a TFDS dataset.*re-copy"):
        open_rlds(copy)
