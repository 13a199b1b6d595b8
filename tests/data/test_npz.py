"""User .npz data: round trip, derived splits, and one error per check that names the value and the fix."""

import os

import numpy as np
import pytest

from infertune.data import load_dataset, save_npz
from infertune.errors import DataError

SPECS = {"pixels": ("float32", ("batch", 1, 8, 8)), "mask": ("int64", ("batch", "seq"))}


def _arrays(n=20):
    rng = np.random.default_rng(0)
    return {
        "pixels": rng.random((n, 1, 8, 8), dtype=np.float32),
        "mask": np.ones((n, 5), dtype=np.int64),
        "labels": np.arange(n, dtype=np.int64) % 10,
    }


def _saved(tmp_path, arrays, name="data.npz"):
    return str(save_npz(tmp_path / name, arrays))


def test_save_then_load_npz_round_trips_arrays_and_labels(tmp_path):
    arrays = _arrays()
    dataset = load_dataset(_saved(tmp_path, arrays), input_specs=SPECS)
    everything = dataset.split("all")
    assert dataset.kind == "arrays"
    np.testing.assert_array_equal(everything.inputs["pixels"], arrays["pixels"])
    np.testing.assert_array_equal(everything.inputs["mask"], arrays["mask"])
    np.testing.assert_array_equal(everything.labels, arrays["labels"])


def test_npz_without_specs_keeps_every_array_as_an_input(tmp_path):
    dataset = load_dataset(_saved(tmp_path, _arrays()))
    assert set(dataset.split("all").inputs) == {"pixels", "mask"}


def test_npz_ignores_arrays_the_model_does_not_take(tmp_path):
    arrays = {**_arrays(), "notes": np.zeros(3)}
    dataset = load_dataset(_saved(tmp_path, arrays), input_specs={"pixels": SPECS["pixels"]})
    assert set(dataset.split("all").inputs) == {"pixels"}


def test_npz_derived_splits_are_half_quarter_rest_disjoint_and_deterministic(tmp_path):
    arrays = _arrays(n=41)
    arrays["mask"] = np.arange(41, dtype=np.int64)[:, None].repeat(5, axis=1)  # row id in every row
    path = _saved(tmp_path, arrays)
    first, second = load_dataset(path), load_dataset(path)
    ids = {name: set(first.split(name).inputs["mask"][:, 0].tolist()) for name in ("train", "calibration", "heldout")}
    assert (len(ids["heldout"]), len(ids["calibration"]), len(ids["train"])) == (20, 10, 11)
    assert ids["heldout"] | ids["calibration"] | ids["train"] == set(range(41))
    assert not ids["heldout"] & ids["calibration"] and not ids["heldout"] & ids["train"]
    assert not ids["calibration"] & ids["train"]
    for name in ("train", "calibration", "heldout"):
        np.testing.assert_array_equal(first.split(name).inputs["mask"], second.split(name).inputs["mask"])
    perm = np.random.default_rng(0).permutation(41)
    assert ids["heldout"] == set(perm[:20].tolist())


def test_npz_with_fewer_than_8_samples_uses_all_of_them_for_every_split(tmp_path):
    dataset = load_dataset(_saved(tmp_path, _arrays(n=7)))
    for name in ("train", "calibration", "heldout"):
        assert len(dataset.split(name)) == 7


def test_npz_missing_input_names_the_input_and_the_arrays_present(tmp_path):
    arrays = _arrays()
    del arrays["mask"]
    with pytest.raises(DataError, match=r"'mask' \(arrays present: pixels\)"):
        load_dataset(_saved(tmp_path, arrays), input_specs=SPECS)


def test_npz_float64_for_float32_input_names_both_dtypes_and_the_cast(tmp_path):
    arrays = {**_arrays(), "pixels": _arrays()["pixels"].astype(np.float64)}
    with pytest.raises(DataError, match=r"'pixels'.*float64.*float32.*arr\.astype\('float32'\)"):
        load_dataset(_saved(tmp_path, arrays), input_specs=SPECS)


def test_npz_wrong_static_dim_names_expected_and_received_shape(tmp_path):
    arrays = {**_arrays(), "pixels": np.zeros((20, 1, 7, 8), dtype=np.float32)}
    with pytest.raises(DataError, match=r"'pixels'.*\(20, 1, 7, 8\).*\('batch', 1, 8, 8\).*axis 2 should be 8, got 7"):
        load_dataset(_saved(tmp_path, arrays), input_specs=SPECS)


def test_npz_wrong_number_of_axes_names_both_shapes(tmp_path):
    arrays = {**_arrays(), "pixels": np.zeros((20, 8, 8), dtype=np.float32)}
    with pytest.raises(DataError, match=r"'pixels'.*3 axes \(20, 8, 8\).*4 axes"):
        load_dataset(_saved(tmp_path, arrays), input_specs=SPECS)


def test_npz_dynamic_dims_accept_any_size(tmp_path):
    arrays = {**_arrays(), "mask": np.ones((20, 77), dtype=np.int64)}
    assert len(load_dataset(_saved(tmp_path, arrays), input_specs=SPECS).split("all")) == 20


def test_npz_different_sample_counts_name_each_count(tmp_path):
    arrays = {**_arrays(), "labels": np.zeros(19, dtype=np.int64)}
    with pytest.raises(DataError, match=r"pixels=20, mask=20, labels=19"):
        load_dataset(_saved(tmp_path, arrays), input_specs=SPECS)


def test_npz_non_finite_floats_name_the_array_and_the_count(tmp_path):
    arrays = _arrays()
    arrays["pixels"][0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    with pytest.raises(DataError, match=r"'pixels'.*3 non-finite values"):
        load_dataset(_saved(tmp_path, arrays))


def test_npz_float_labels_are_refused_with_the_cast(tmp_path):
    arrays = {**_arrays(), "labels": np.zeros(20, dtype=np.float32)}
    with pytest.raises(DataError, match=r"'labels'.*float32.*integer.*astype\('int64'\)"):
        load_dataset(_saved(tmp_path, arrays))


def test_npz_int32_labels_are_converted_to_int64(tmp_path):
    arrays = {**_arrays(), "labels": np.arange(20, dtype=np.int32)}
    assert load_dataset(_saved(tmp_path, arrays)).split("all").labels.dtype == np.int64


def test_npz_object_array_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, pixels=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="pickled.npz.*object arrays are refused"):
        load_dataset(str(path))


def test_npz_with_only_labels_says_there_are_no_inputs(tmp_path):
    with pytest.raises(DataError, match=r"no input arrays \(arrays present: labels\)"):
        load_dataset(_saved(tmp_path, {"labels": np.zeros(3, dtype=np.int64)}))


def test_unknown_data_set_name_lists_zoo_names_and_the_file_formats():
    expected = r"unknown data set 'foo': use one of digits, docstrings, or the path of a data file \(\.npz, \.txt"
    with pytest.raises(DataError, match=expected):
        load_dataset("foo")


def test_missing_npz_path_says_it_does_not_exist(tmp_path):
    with pytest.raises(DataError, match=r"missing\.npz' does not exist"):
        load_dataset(str(tmp_path / "missing.npz"))


def test_save_npz_leaves_no_temp_file_and_replaces_an_existing_file(tmp_path):
    save_npz(tmp_path / "data.npz", {"x": np.zeros(2)})
    save_npz(tmp_path / "data.npz", {"x": np.ones(3)})
    assert os.listdir(tmp_path) == ["data.npz"]
    with np.load(tmp_path / "data.npz") as archive:
        np.testing.assert_array_equal(archive["x"], np.ones(3))


def test_save_npz_refuses_object_arrays(tmp_path):
    with pytest.raises(DataError, match="'x' has dtype object"):
        save_npz(tmp_path / "data.npz", {"x": np.array([None, 1], dtype=object)})
    assert os.listdir(tmp_path) == []


def _npy_member(shape, payload: bytes) -> bytes:
    import io

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return header.getvalue() + payload


def test_npz_declaring_more_samples_than_it_holds_is_refused_before_decompressing(tmp_path):
    import zipfile

    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pixels.npy", _npy_member((10 ** 12, 64), b"\0" * 1000))
    with pytest.raises(DataError, match=r"declares shape \(1000000000000, 64\) of float32 .* but holds 1000 bytes"):
        load_dataset(str(path))


def test_npz_bigger_than_memory_once_decompressed_is_refused_before_decompressing(tmp_path, monkeypatch):
    """A zip bomb: 1 GB of zeros in about 1 MB, refused from its headers alone."""
    import resource
    import zipfile

    from infertune.data import npz

    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("pixels.npy", "w", force_zip64=True) as member:
            member.write(_npy_member((2 ** 28,), b""))
            for _ in range(256):
                member.write(b"\0" * (4 * 2 ** 20))
    assert path.stat().st_size < 2_000_000
    monkeypatch.setattr(npz, "_available_memory", lambda: 1_000_000_000)  # as on a machine with 1 GB free
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="holds 1.1 GB of arrays once decompressed, more than half"):
        load_dataset(str(path))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: nothing was inflated


def test_a_text_file_named_npz_is_called_text_not_pickled_data(tmp_path):
    path = tmp_path / "sentences.npz"
    path.write_text("The first sentence.\nThe second one.\n")
    with pytest.raises(DataError, match="is not an .npz \\(zip\\) archive, but text: .*text data goes in .txt"):
        load_dataset(str(path))
