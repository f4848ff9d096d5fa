import pytest

from dante_nnunet.config import ChannelSplit, DanteConfigError
from dante_nnunet.jobs.inmemory import dataset_json


def test_split_by_name_keeps_dataset_order():
    s = ChannelSplit.from_dataset_json(dataset_json(("T1ce",)))
    assert s.limited_indices == (0, 2, 3)
    assert s.limited_names == ("T1", "T2", "FLAIR")
    assert s.privileged_indices == (1,)


def test_several_privileged_channels():
    s = ChannelSplit.from_dataset_json(dataset_json(("FLAIR", "T1ce")))
    assert s.privileged_indices == (1, 3)
    assert s.limited_names == ("T1", "T2")


def test_missing_block_names_the_key_and_file():
    with pytest.raises(DanteConfigError, match=r'my/dataset.json: no "dante" block'):
        ChannelSplit.from_dataset_json(dataset_json(None), "my/dataset.json")


def test_unknown_name():
    with pytest.raises(DanteConfigError, match=r"\['T1c'\], which are not in channel_names"):
        ChannelSplit.from_dataset_json(dataset_json(("T1c",)))


def test_every_channel_privileged():
    with pytest.raises(DanteConfigError, match="names every channel"):
        ChannelSplit.from_dataset_json(dataset_json(("T1", "T1ce", "T2", "FLAIR")))


@pytest.mark.parametrize("value", [[], "T1ce", None])
def test_privileged_must_be_a_non_empty_list(value):
    d = dataset_json()
    d["dante"]["privileged_channels"] = value
    with pytest.raises(DanteConfigError, match="non-empty list"):
        ChannelSplit.from_dataset_json(d)
