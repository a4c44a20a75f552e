"""Slices (labeled/<class>/<slice>/): found in folder trees and manifests, split by slice, balanced in training."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from crack_model.core.config import DataConfig
from crack_model.data.balance import balance_weights, cell_shares
from crack_model.data.labeled import NO_SLICE, LabeledImage, list_labeled, split_images
from tests import imagefiles


def image(index: int, label: str, slice_name: str) -> LabeledImage:
    return LabeledImage(f"/{label}/{slice_name}/{index}.jpg", label, f"{index:064x}", f"{index:016x}", slice_name)


def test_slice_is_the_folder_below_the_class(tmp_path: Path):
    """<class>/<slice>/.../a.jpg has that slice; an image right in its class folder has none."""
    for key in ("Negative/a.jpg", "Negative/site-b/deeper/b.jpg", "Positive/site-b/c.jpg"):
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(imagefiles.jpeg())
    slices = {Path(item.uri).name: item.slice for item in list_labeled(tmp_path, ("Negative", "Positive"))}
    assert slices == {"a.jpg": NO_SLICE, "b.jpg": "site-b", "c.jpg": "site-b"}


def test_manifest_slice_column(tmp_path: Path):
    """A manifest's optional slice column is read; rows without one have no slice."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("uri,label,slice\na.jpg,Negative,site-b\nb.jpg,Positive,\n", encoding="utf-8")
    assert [item.slice for item in list_labeled(manifest, ("Negative", "Positive"))] == ["site-b", NO_SLICE]


def test_split_gives_a_small_slice_its_share_of_validation_and_test():
    """100 site photos beside 1,000 others: about 15 of them land in validation and 15 in test, per class too."""
    images = [image(index, "Negative" if index % 2 else "Positive", "metu") for index in range(1000)]
    images += [image(5000 + index, "Negative" if index % 2 else "Positive", "site-b") for index in range(100)]
    split = split_images(images, DataConfig())
    for part in (split.validation, split.test):
        cells = Counter((item.label, item.slice) for item in part)
        assert cells[("Positive", "site-b")] == cells[("Negative", "site-b")] == 8  # round(50 * 0.15)
        assert cells[("Positive", "metu")] == 75


def test_a_grown_pool_keeps_what_the_starting_model_trained_on_in_train():
    """A champion split 1,000 photos with another seed; the pool grew by 100 site photos. Every image it trained
    on stays in train, and validation and test still get their shares, from the images it never trained on."""
    pool = [image(index, "Negative" if index % 2 else "Positive", "metu") for index in range(1000)]
    champion = split_images(pool, DataConfig(seed=7))
    seen = frozenset(item.sha256 for item in champion.train)
    pool += [image(5000 + index, "Negative" if index % 2 else "Positive", "site-b") for index in range(100)]

    drawn_afresh = split_images(pool, DataConfig())
    assert {item.sha256 for item in drawn_afresh.validation + drawn_afresh.test} & seen  # what this guards against
    split = split_images(pool, DataConfig(), keep_in_train=seen)
    assert seen <= {item.sha256 for item in split.train}
    assert not {item.sha256 for item in split.validation + split.test} & seen

    def cells(part):
        return Counter((item.label, item.slice) for item in part)

    assert cells(split.validation) == cells(drawn_afresh.validation) and cells(split.test) == cells(drawn_afresh.test)
    assert sorted(item.uri for part in split.parts().values() for item in part) == sorted(item.uri for item in pool)


def test_when_the_start_trained_on_most_of_a_slice_validation_and_test_share_the_rest():
    """A champion trained with no test split (85 % of the pool): the 15 % it never saw are shared by validation
    and test, in proportion to their fractions, rather than test taking them all and leaving validation empty."""
    pool = [image(index, "Negative" if index % 2 else "Positive", "metu") for index in range(400)]
    champion = split_images(pool, DataConfig(test_fraction=0.0))
    seen = frozenset(item.sha256 for item in champion.train)
    split = split_images(pool, DataConfig(), keep_in_train=seen)
    assert not {item.sha256 for item in split.validation + split.test} & seen
    assert {item.sha256 for item in split.validation + split.test} == {item.sha256 for item in champion.validation}
    assert len(split.validation) == len(split.test) == len(champion.validation) // 2 == 30

    few = [image(index, "Positive", "metu") for index in range(40)]  # 5 unseen: validation gets the odd one
    split = split_images(few, DataConfig(), keep_in_train={item.sha256 for item in few[:35]})
    assert (len(split.validation), len(split.test), len(split.train)) == (3, 2, 35)


def test_balance_weights_give_every_class_and_slice_the_same_total():
    """With power 1 each (class, slice) cell weighs the same in total; the mean weight is 1."""
    images = [image(index, "Positive", "metu") for index in range(900)] + [
        image(index, "Negative", "metu") for index in range(700)
    ]
    images += [image(index, "Positive", "site-b") for index in range(30)]
    images += [image(index, "Negative", "site-b") for index in range(20)]
    weights = balance_weights(images, 1.0)
    assert weights.mean() == pytest.approx(1.0)
    assert list(cell_shares(images, weights).values()) == pytest.approx([0.25] * 4, abs=1e-3)
    assert weights[-1] / weights[0] == pytest.approx(900 / 20, rel=1e-4)


def test_balance_power_zero_is_uniform_and_out_of_range_is_an_error():
    """Power 0 leaves every image at weight 1; a power outside [0, 1] is refused."""
    images = [image(index, "Positive", "metu") for index in range(10)] + [image(99, "Negative", "site-b")]
    assert np.allclose(balance_weights(images, 0.0), 1.0)
    half = balance_weights(images, 0.5)
    assert half[-1] / half[0] == pytest.approx(np.sqrt(10), rel=1e-4)
    with pytest.raises(ValueError, match="power"):
        balance_weights(images, 1.5)


def test_weighted_dataset_carries_one_weight_per_image(synth_data):
    """make_dataset with weights yields (pixels, label, weight) batches in the images' order."""
    from crack_model.data.labeled import load_labeled, make_dataset

    config = DataConfig(image_size=32, batch_size=4)
    images = load_labeled(synth_data, config)[:6]
    batches = list(make_dataset(images, config, weights=[1, 2, 3, 4, 5, 6]))
    assert len(batches[0]) == 3
    assert np.concatenate([batch[2].numpy() for batch in batches]).tolist() == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="one weight per image"):
        make_dataset(images, config, weights=[1.0])


def test_crack_weight_tilts_the_loss_towards_cracks_and_must_be_positive():
    """crack_weight multiplies the crack cells' share after balancing; the mean weight stays 1."""
    images = [image(index, "Positive", "metu") for index in range(40)] + [
        image(index, "Negative", "metu") for index in range(60)
    ]
    weights = balance_weights(images, 1.0, crack_class="Positive", crack_weight=3.0)
    assert weights.mean() == pytest.approx(1.0)
    assert cell_shares(images, weights) == pytest.approx({"Negative/metu": 0.25, "Positive/metu": 0.75}, abs=1e-3)
    assert np.array_equal(balance_weights(images, 1.0, crack_class="Positive"), balance_weights(images, 1.0))
    with pytest.raises(ValueError, match="crack weight"):
        balance_weights(images, 1.0, crack_class="Positive", crack_weight=0.0)


def test_a_split_manifest_reads_back_with_its_slices(tmp_path):
    """split.csv keeps each image's slice (exports and --split evaluation read it back); older files have none."""
    from crack_model.data.labeled import Split, write_split_manifest
    from crack_model.evaluation.assess import read_split_manifest

    train = [image(1, "Positive", "site-b"), image(2, "Negative", "metu")]
    write_split_manifest(Split(train, [image(3, "Negative", "metu")], []), tmp_path / "split.csv")
    read = read_split_manifest(tmp_path / "split.csv", "train")
    assert [(entry.uri, entry.label, entry.sha256, entry.slice) for entry in read] == [
        (entry.uri, entry.label, entry.sha256, entry.slice) for entry in train]  # fmt: skip
    older = tmp_path / "older.csv"
    older.write_text("uri,label,sha256,split\n/a.jpg,Negative,abc,train\n", encoding="utf-8")
    assert [entry.slice for entry in read_split_manifest(older, "train")] == [NO_SLICE]


def test_classes_are_balanced_before_their_slices():
    """Cells balanced all alike gave a class the weight of its number of folders: 20 clean photos of a new site
    and three stray one-photo folders under Negative left the crack class 0.20 of the loss."""
    images = [image(index, "Positive", NO_SLICE) for index in range(100)]
    images += [image(index, "Negative", NO_SLICE) for index in range(100)]
    images += [image(index, "Negative", "site-c") for index in range(20)]
    images += [image(900 + index, "Negative", f"stray-{index}") for index in range(3)]
    shares = cell_shares(images, balance_weights(images, 1.0))
    assert shares["Positive/(none)"] == pytest.approx(0.5, abs=1e-3)
    assert sum(share for cell, share in shares.items() if cell.startswith("Negative/")) == pytest.approx(0.5, abs=1e-3)
    assert shares["Negative/site-c"] == pytest.approx(0.1, abs=1e-3)  # one of its five slices
    half = cell_shares(images, balance_weights(images, 0.5))
    assert half["Positive/(none)"] == pytest.approx(10 / (10 + 123**0.5), abs=1e-3)  # sqrt(100) against sqrt(123)
