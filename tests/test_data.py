"""Readers for the real layouts, the split, the stream and the transforms."""

import json

import h5py
import numpy as np
import pytest
import torch

from conftest import DATA, write_kaggle, write_pcam
from core.data import PatchStream, detect_layout, open_split, selected_indices, to_model_input
from core.data.check import check_dataset
from core.data.demo import real_patches, write_demo_dataset
from core.data.sources import kaggle_split_ids, read_kaggle_labels
from core.data.transforms import center_crop, dihedral
from core.errors import BadInput


# ---- PCam h5 ---------------------------------------------------------------------------------------
def test_pcam_split_reads_blocks_and_labels(pcam):
    s = open_split(pcam, "train")
    assert len(s) == 64 and s.read(3, 7).shape == (4, 96, 96, 3)
    assert s.labels[:4].tolist() == [0, 1, 0, 1]
    assert detect_layout(pcam) == "pcam"


def test_real_pcam_patches_shipped_in_the_package():
    x, y = real_patches()
    assert x.shape == (15, 96, 96, 3) and x.dtype == np.uint8
    assert sorted(set(y.tolist())) == [0, 1] and int(y.sum()) == 5
    assert x.std() > 10  # real tissue, not a blank placeholder


@pytest.mark.parametrize("break_it,message", [
    (lambda r: h5py.File(r / "camelyonpatch_level_2_split_train_x.h5", "w").create_dataset("x", data=np.zeros((4, 40, 40, 3), np.uint8)),
     "dataset 'x' must be \\(N,96,96,3\\) uint8, got \\(4, 40, 40, 3\\)"),
    (lambda r: h5py.File(r / "camelyonpatch_level_2_split_train_x.h5", "w").create_dataset("x", data=np.zeros((4, 32, 64, 3), np.uint8)),
     "got \\(4, 32, 64, 3\\)"),
    (lambda r: h5py.File(r / "camelyonpatch_level_2_split_train_x.h5", "w").create_dataset("x", data=np.zeros((64, 96, 96, 3), np.float32)),
     "float32"),
    (lambda r: h5py.File(r / "camelyonpatch_level_2_split_train_y.h5", "w").create_dataset("y", data=np.zeros((5, 1, 1, 1), np.uint8)),
     "64 images but camelyonpatch_level_2_split_train_y.h5 has 5 labels"),
    (lambda r: h5py.File(r / "camelyonpatch_level_2_split_train_y.h5", "w").create_dataset("z", data=np.zeros((64,), np.uint8)),
     "no dataset 'y'"),
    (lambda r: (r / "camelyonpatch_level_2_split_train_y.h5").unlink(), "missing file for split 'train'"),
    (lambda r: (r / "camelyonpatch_level_2_split_train_x.h5").write_bytes(b"not hdf5"), "not a readable HDF5 file"),
])
def test_pcam_bad_files_name_the_problem(pcam, break_it, message):
    f = break_it(pcam)
    if hasattr(f, "file"):
        f.file.close()
    with pytest.raises(BadInput, match=message):
        open_split(pcam, "train")


def test_missing_data_path(tmp_path):
    with pytest.raises(BadInput, match="does not exist"):
        detect_layout(tmp_path / "nope")
    with pytest.raises(BadInput, match="no dataset found"):
        detect_layout(tmp_path)


def test_empty_class_selection(tmp_path):
    root = write_pcam(tmp_path / "p", {"train": 4})
    with h5py.File(root / "camelyonpatch_level_2_split_train_y.h5", "w") as f:
        f.create_dataset("y", data=np.zeros((4, 1, 1, 1), np.uint8))
    s = open_split(root, "train")
    assert len(selected_indices(s, "non_cancerous")) == 4
    with pytest.raises(BadInput, match="no patches of class 'cancerous'"):
        selected_indices(s, "cancerous")


# ---- Kaggle ------------------------------------------------------------------------------------------
def test_real_kaggle_tifs_with_index_column():
    ids, labels = read_kaggle_labels(DATA / "kaggle_real")
    assert len(ids) == 15 and int(labels.sum()) == 5
    split = kaggle_split_ids(ids, seed=0)
    s = open_split(DATA / "kaggle_real", "train")
    assert detect_layout(DATA / "kaggle_real") == "kaggle"
    assert len(s) == len(split["train"]) == 12
    assert s.read(0, 2).shape == (2, 96, 96, 3)


def test_kaggle_split_is_disjoint_complete_and_order_independent(tmp_path):
    ids = [f"{i:040x}" for i in range(1000)]
    split = kaggle_split_ids(ids, seed=7)
    sets = {k: set(v) for k, v in split.items()}
    assert sets["train"].isdisjoint(sets["valid"]) and sets["train"].isdisjoint(sets["test"])
    assert sets["valid"].isdisjoint(sets["test"])
    assert set().union(*sets.values()) == set(ids)
    assert [len(split[k]) for k in ("train", "valid", "test")] == [800, 100, 100]
    assert kaggle_split_ids(list(reversed(ids)), seed=7) == split
    assert kaggle_split_ids(ids, seed=8) != split


def test_no_evaluation_id_can_leak_into_train(tmp_path):
    """The original project sampled eval ids independently of train, so ~90% of them were train ids.
    Here every eval id comes from the held-out splits, for every seed."""
    ids = [f"{i:040x}" for i in range(500)]
    for seed in range(5):
        split = kaggle_split_ids(ids, seed)
        assert not set(split["test"]) & set(split["train"])
        assert not set(split["valid"]) & set(split["train"])


def test_kaggle_split_frozen_in_a_run_file(tmp_path):
    root, ids = write_kaggle(tmp_path / "k", n=20)
    frozen = {"train": ids[:10], "valid": ids[10:15], "test": ids[15:]}
    (tmp_path / "split.json").write_text(json.dumps(frozen))
    assert open_split(root, "valid", split_file=tmp_path / "split.json").ids == ids[10:15]


@pytest.mark.parametrize("edit,message", [
    (lambda p: p.write_text(p.read_text() + "abc,1\n"), "1 ids have no image in .*abc.tif"),
    (lambda p: p.write_text(p.read_text() + p.read_text().splitlines()[1] + "\n"), "duplicate id"),
    (lambda p: p.write_text(p.read_text().replace(",1\n", ",2\n", 1)), "label must be 0 or 1, got '2'"),
    (lambda p: p.write_text("name,value\nx,1\n"), "header must name columns 'id' and 'label'"),
])
def test_kaggle_csv_problems(tmp_path, edit, message):
    root, _ = write_kaggle(tmp_path / "k", n=6)
    edit(root / "train_labels.csv")
    with pytest.raises(BadInput, match=message):
        open_split(root, "train")


def test_kaggle_wrong_image_shape(tmp_path):
    import imageio.v3 as iio

    root, ids = write_kaggle(tmp_path / "k", n=10)
    for pid in ids:
        iio.imwrite(root / "train" / f"{pid}.tif", np.zeros((50, 50, 3), np.uint8))
    s = open_split(root, "train")
    with pytest.raises(BadInput, match="expected a 96x96 RGB uint8 image, got \\(50, 50, 3\\)"):
        s.read(0, 1)


# ---- stream -----------------------------------------------------------------------------------------
def _stream(source, seed=0, position=0, **kw):
    return PatchStream(source, np.arange(len(source)), batch_size=5, seed=seed, position=position,
                       block_size=8, window_blocks=2, **kw)


def _fingerprints(images):
    return [int(img.astype(np.int64).sum() * 1000 + img[0, 0, 0]) for img in images]


def test_stream_epoch_is_a_permutation_and_epochs_differ(tmp_path):
    source = open_split(write_pcam(tmp_path / "p", {"train": 40}), "train")
    windows0, _ = _stream(source).epoch_plan(0)
    windows1, _ = _stream(source).epoch_plan(1)
    order0, order1 = np.concatenate(windows0), np.concatenate(windows1)
    assert sorted(order0.tolist()) == list(range(40))
    assert order0.tolist() != order1.tolist()
    assert order0.tolist() != list(range(40))
    assert max(len(w) for w in windows0) <= 16  # bounded by window_blocks * block_size


def test_stream_resumes_at_any_position(tmp_path):
    source = open_split(write_pcam(tmp_path / "p", {"train": 37}), "train")
    straight = _stream(source)
    batches = [straight.next_batch() for _ in range(20)]  # crosses two epoch boundaries
    resumed = _stream(source, position=5 * 13)
    for images, labels, codes in batches[13:]:
        r_images, r_labels, r_codes = resumed.next_batch()
        assert np.array_equal(images, r_images) and np.array_equal(labels, r_labels)
        assert np.array_equal(codes, r_codes)


def test_stream_reads_contiguous_blocks_only(tmp_path):
    source = open_split(write_pcam(tmp_path / "p", {"train": 64}), "train")
    reads = []
    original = source.read
    source.read = lambda a, b: reads.append((a, b)) or original(a, b)
    stream = _stream(source)
    for _ in range(13):
        stream.next_batch()
    stream.close()
    assert reads and all(b - a <= 8 and a % 8 == 0 for a, b in reads)


def test_stream_respects_class_selection(pcam):
    source = open_split(pcam, "train")
    stream = PatchStream(source, selected_indices(source, "cancerous"), batch_size=10, seed=0)
    for _ in range(5):
        _, labels, _ = stream.next_batch()
        assert set(labels.tolist()) == {1}


# ---- transforms ---------------------------------------------------------------------------------------
def test_center_crop_takes_the_labelled_centre():
    x = torch.zeros(1, 3, 96, 96)
    x[..., 32:64, 32:64] = 1
    assert center_crop(x, 32).eq(1).all()
    assert center_crop(x, 64).sum() == 3 * 32 * 32


def test_dihedral_gives_eight_distinct_symmetries_and_preserves_content():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(8, 1, 1, 1)
    out = dihedral(x, torch.arange(8))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8
    assert all(sorted(o.flatten().tolist()) == list(range(16)) for o in out)
    assert torch.equal(out[0], x[0])


def test_to_model_input_range_and_resize():
    images = np.full((2, 96, 96, 3), 255, np.uint8)
    images[:, :48] = 0
    x = to_model_input(images, 32, "center-crop", "cpu")
    assert x.shape == (2, 3, 32, 32) and x.min() == -1 and x.max() == 1
    r = to_model_input(images, 32, "resize", "cpu")
    assert r.shape == (2, 3, 32, 32) and torch.allclose(r[:, :, :15], torch.tensor(-1.0))
    assert torch.allclose(r[:, :, 17:], torch.tensor(1.0))


# ---- demo and check -----------------------------------------------------------------------------------
def test_demo_dataset_is_pcam_layout_and_labelled_as_demo(tmp_path):
    counts = write_demo_dataset(tmp_path / "demo")
    report = check_dataset(tmp_path / "demo")
    assert report["layout"] == "pcam" and not report["problems"]
    assert {k: v["n"] for k, v in report["splits"].items()} == counts
    for split in report["splits"].values():
        assert split["cancerous"] > 0 and split["non_cancerous"] > 0
    assert "DEMO" in (tmp_path / "demo" / "README.txt").read_text()
    with h5py.File(tmp_path / "demo" / "camelyonpatch_level_2_split_train_x.h5") as f:
        assert "DEMO" in f.attrs["description"]
        assert f["x"].shape[1:] == (96, 96, 3)


def test_check_reports_a_broken_split_and_keeps_the_rest(pcam):
    (pcam / "camelyonpatch_level_2_split_valid_y.h5").unlink()
    report = check_dataset(pcam)
    assert set(report["splits"]) == {"train", "test"}
    assert any("valid" in p for p in report["problems"])


def corrupt_the_middle(x_path) -> None:
    """Overwrite a chunk-index node (HDF5 B-tree, signature 'TREE') in the middle of a chunked h5:
    its first and last patches still read, the ones that node indexes do not."""
    data = x_path.read_bytes()
    middle = [i for i in range(len(data)) if data.startswith(b"TREE", i) and len(data) / 4 < i < len(data) * 3 / 4]
    with x_path.open("r+b") as fh:
        fh.seek(middle[0])
        fh.write(b"\0" * 64)


def test_a_pcam_file_corrupt_in_the_middle_fails_data_check_and_train_naming_file_and_patch(workdir, cli):
    root = write_pcam(workdir / "p", {"train": 300, "valid": 4, "test": 4})
    x_path = root / "camelyonpatch_level_2_split_train_x.h5"
    corrupt_the_middle(x_path)
    source = open_split(root, "train")
    source.read(0, 1), source.read(299, 300)  # the old check: both ends read
    source.close()
    r = cli("data", "check", root)
    assert r.code == 2 and f"{x_path}: cannot read patch " in r.err and len(r.err.strip().splitlines()) == 1, r
    r = cli("train", "--data", root, "--image-size", "32", "--dim", "16", "--dim-mults", "1,2", "--device", "cpu")
    assert r.code == 2 and f"{x_path}: cannot read patch " in r.err and len(r.err.strip().splitlines()) == 1, r
    assert not (workdir / "runs.db").exists() and not (workdir / "runs").exists()


def test_a_patch_unreadable_during_training_names_its_file(tmp_path):
    from core.data.sources import UnreadablePatches

    root = write_pcam(tmp_path / "p", {"train": 300})
    corrupt_the_middle(root / "camelyonpatch_level_2_split_train_x.h5")
    source = open_split(root, "train")
    stream = PatchStream(source, np.arange(len(source)), batch_size=300, seed=0, block_size=16)
    try:
        with pytest.raises(UnreadablePatches, match="camelyonpatch_level_2_split_train_x.h5: cannot read patches"):
            stream.next_batch()
    finally:
        stream.close()
        source.close()


def test_a_layout_whose_splits_are_all_empty_fails_data_check(workdir, cli):
    root = write_pcam(workdir / "p", {"train": 0, "valid": 0, "test": 0}, chunks=False)
    r = cli("data", "check", root)
    assert r.code == 2 and "every split is empty" in r.err and len(r.err.strip().splitlines()) == 1, r


# ---- every image checked before a run is stored --------------------------------------------------------
def _bad_image(kind: str):
    import imageio.v3 as iio

    def write(path):
        if kind == "junk":
            path.write_bytes(b"II*\x00 this is not a tiff at all")
        else:
            image = {"grayscale": np.zeros((96, 96), np.uint8), "rgba": np.zeros((96, 96, 4), np.uint8),
                     "64px": np.zeros((64, 64, 3), np.uint8)}[kind]
            iio.imwrite(path, image)
    return write


@pytest.mark.parametrize("kind,message", [("grayscale", r"got \(96, 96\) uint8"), ("rgba", r"got \(96, 96, 4\)"),
                                          ("64px", r"got \(64, 64, 3\)"), ("junk", "not a readable image")])
def test_one_bad_kaggle_image_fails_data_check_and_train_before_anything_is_stored(workdir, cli, kind, message):
    import re

    root, ids = write_kaggle(workdir / "k", n=30)
    bad = root / "train" / f"{ids[17]}.tif"
    _bad_image(kind)(bad)
    r = cli("data", "check", root)
    assert r.code == 2 and str(bad) in r.err and re.search(message, r.err), r
    r = cli("train", "--data", root, "--image-size", "32", "--dim", "16", "--dim-mults", "1,2", "--device", "cpu")
    assert r.code == 2 and str(bad) in r.err and len(r.err.strip().splitlines()) == 1, r
    assert not (workdir / "runs.db").exists() and not (workdir / "runs").exists()


def test_verified_kaggle_folders_are_not_decoded_again_until_a_file_changes(tmp_path, monkeypatch):
    from core.data import sources

    root, ids = write_kaggle(tmp_path / "k", n=12)
    decoded = []
    real = sources.read_patch
    monkeypatch.setattr(sources, "read_patch", lambda p: decoded.append(p) or real(p))
    assert sources.verify_kaggle_images(root, ids, tmp_path / "cache") == []
    assert len(decoded) == 12
    assert sources.verify_kaggle_images(root, ids, tmp_path / "cache") == []
    assert len(decoded) == 12, "an unchanged folder passed before"
    _bad_image("rgba")(root / "train" / f"{ids[3]}.tif")
    assert len(sources.verify_kaggle_images(root, ids, tmp_path / "cache")) == 1


def test_labels_csv_with_bom_and_crlf_is_valid(tmp_path):
    root, ids = write_kaggle(tmp_path / "k", n=10)
    csv_path = root / "train_labels.csv"
    text = csv_path.read_text().replace("\r\n", "\n").replace("\n", "\r\n")
    csv_path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert read_kaggle_labels(root)[0] == ids


def test_labels_csv_in_latin1_is_one_line(workdir, cli):
    root, _ = write_kaggle(workdir / "k", n=6)
    csv_path = root / "train_labels.csv"
    csv_path.write_bytes(csv_path.read_bytes() + "caf\xe9,1\n".encode("latin-1"))
    r = cli("data", "check", root)
    assert r.code == 2 and "train_labels.csv: not UTF-8 text (byte 0xe9" in r.err and len(r.err.splitlines()) == 1


@pytest.mark.parametrize("pid", ["../../x", "..", "sub/dir", "a\\b"])
def test_kaggle_ids_must_be_plain_file_names(tmp_path, pid):
    root, _ = write_kaggle(tmp_path / "k", n=4)
    (tmp_path / "x.tif").write_bytes(b"outside the folder")
    csv_path = root / "train_labels.csv"
    csv_path.write_text(csv_path.read_text() + f"{pid},0\n")
    with pytest.raises(BadInput, match="is not a plain file name"):
        read_kaggle_labels(root)


def test_shuffle_window_sets_how_many_blocks_mix(pcam):
    from core.config import TrainConfig
    from core.train.trainer import Trainer

    cfg = TrainConfig(data=str(pcam), image_size=32, dim=16, dim_mults="1,2", res_blocks=1, attention="none",
                      batch_size=4, device="cpu", shuffle_window=3).validate()
    trainer = Trainer(cfg, pcam.parent / "run", pcam)
    assert trainer.stream.window_blocks == 3
    trainer.close()
    with pytest.raises(BadInput, match="--shuffle-window: must be positive"):
        TrainConfig(shuffle_window=0).validate()


def test_validation_takes_a_seeded_random_subset_not_the_first_patches(tmp_path):
    from core.config import TrainConfig
    from core.train.trainer import Trainer

    root = write_pcam(tmp_path / "p", {"train": 16, "valid": 400, "test": 4})
    seen = []

    def trainer_reading(seed):
        cfg = TrainConfig(data=str(root), image_size=32, dim=16, dim_mults="1,2", res_blocks=1, attention="none",
                          batch_size=4, device="cpu", seed=seed).validate()
        trainer = Trainer(cfg, tmp_path / f"run{seed}", root)
        source = trainer.source.__class__
        reads = []
        original = source.read
        source.read = lambda self, a, b: reads.append(a) or original(self, a, b)
        try:
            assert trainer.validation_loss() is not None
        finally:
            source.read = original
            trainer.close()
        return sorted(set(reads))

    first, again, other = trainer_reading(0), trainer_reading(0), trainer_reading(1)
    seen = first
    assert len(seen) == 128 and seen == again and first != other
    assert max(seen) > 300, "drawn from the whole split, not its first 128 patches"


def test_dihedral_gather_equals_rotating_and_mirroring_each_image():
    x = torch.randint(0, 256, (16, 3, 7, 7), dtype=torch.uint8)
    codes = torch.arange(16) % 8
    out = dihedral(x, codes)
    for i, code in enumerate(codes.tolist()):
        expected = torch.rot90(x[i], code % 4, dims=(-2, -1))
        expected = torch.flip(expected, dims=(-1,)) if code >= 4 else expected
        assert torch.equal(out[i], expected), code


def test_crop_first_preprocessing_equals_crop_of_the_float_patch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 96, 96, 3), dtype=np.uint8)
    codes = rng.integers(0, 8, 8)
    x = to_model_input(images, 32, "center-crop", "cpu", codes)
    reference = torch.from_numpy(images).permute(0, 3, 1, 2).float()[..., 32:64, 32:64] / 127.5 - 1
    for i, code in enumerate(codes):
        expected = torch.rot90(reference[i], int(code) % 4, dims=(-2, -1))
        expected = torch.flip(expected, dims=(-1,)) if code >= 4 else expected
        assert torch.equal(x[i], expected)
