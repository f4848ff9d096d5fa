"""The channel split of a DANTE dataset, read from its dataset.json.

A DANTE dataset is an ordinary nnU-Net raw dataset whose dataset.json carries one extra block::

    "channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"},
    "dante": {"privileged_channels": ["T1ce"]}

The privileged channels (X^P in the paper) are named, so that the block survives a re-ordering of
channels. Where two channels share a name (nnU-Net picks CT normalisation by the name "CT", so a
non-contrast CT and a CT angiography are both called "CT"), they are given as channel numbers
instead: ``"privileged_channels": [1]``. Every other channel, in dataset order, is a limited channel
(X^L): the channels the deployed model receives, renumbered ``_0000, _0001, ...`` in that order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence, Tuple

import numpy as np


class DanteConfigError(ValueError):
    """A dataset.json that cannot drive DANTE training; the message names the key at fault."""


@dataclass(frozen=True)
class ChannelSplit:
    """Which input channels are limited (deployed) and which are privileged (training only).

    ``channel_names`` lists every channel name in dataset order (index = nnU-Net channel number).
    """
    channel_names: Tuple[str, ...]
    privileged_indices: Tuple[int, ...]

    @property
    def limited_indices(self) -> Tuple[int, ...]:
        return tuple(i for i in range(len(self.channel_names)) if i not in self.privileged_indices)

    @property
    def limited_names(self) -> Tuple[str, ...]:
        return tuple(self.channel_names[i] for i in self.limited_indices)

    @property
    def privileged_names(self) -> Tuple[str, ...]:
        return tuple(self.channel_names[i] for i in self.privileged_indices)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    def dante_block(self) -> dict:
        """The dataset.json "dante" block that reads back as this split: privileged channels by name, or
        by number where channel names repeat (two "CT" channels)."""
        if len(set(self.channel_names)) == len(self.channel_names):
            return {"privileged_channels": list(self.privileged_names)}
        return {"privileged_channels": list(self.privileged_indices)}

    @classmethod
    def from_names(cls, channel_names: Sequence[str], privileged: Sequence[str],
                   source: str = "dataset.json") -> "ChannelSplit":
        names = tuple(str(n) for n in channel_names)
        if isinstance(privileged, str) or not isinstance(privileged, Sequence) or len(privileged) == 0:
            raise DanteConfigError(
                f'{source}: "dante" -> "privileged_channels" must be a non-empty list of channel names '
                f'from channel_names {list(names)} (or of channel numbers), got {privileged!r}')
        if all(isinstance(p, int) and not isinstance(p, bool) for p in privileged):
            return cls._from_indices(names, privileged, source)
        unknown = [p for p in privileged if p not in names]
        if unknown:
            raise DanteConfigError(
                f'{source}: "dante" -> "privileged_channels" names {unknown}, which are not in channel_names '
                f'{list(names)}')
        if len(set(names)) != len(names):
            raise DanteConfigError(f'{source}: channel_names {list(names)} repeat a name, so the privileged '
                                   f'channels must be given by number, e.g. "privileged_channels": '
                                   f'[{len(names) - 1}]')
        return cls._from_indices(names, [names.index(p) for p in privileged], source)

    @classmethod
    def _from_indices(cls, names: Tuple[str, ...], privileged: Sequence[int], source: str) -> "ChannelSplit":
        bad = [p for p in privileged if not 0 <= p < len(names)]
        if bad:
            raise DanteConfigError(f'{source}: "dante" -> "privileged_channels" numbers {bad}, but channels are '
                                   f'0..{len(names) - 1} ({list(names)})')
        if len(set(privileged)) != len(privileged):
            raise DanteConfigError(f'{source}: "dante" -> "privileged_channels" lists a channel twice: '
                                   f'{list(privileged)}')
        idx = tuple(sorted(privileged))
        if len(idx) == len(names):
            raise DanteConfigError(
                f'{source}: "dante" -> "privileged_channels" names every channel ({list(names)}); at least one '
                f'limited channel must remain for the deployed model')
        return cls(names, idx)

    @classmethod
    def from_dataset_json(cls, dataset_json: Mapping, source: str = "dataset.json") -> "ChannelSplit":
        if "channel_names" not in dataset_json:
            raise DanteConfigError(f'{source}: no "channel_names" key')
        ch = dataset_json["channel_names"]
        try:
            names = [ch[str(i)] for i in range(len(ch))]
        except KeyError:
            raise DanteConfigError(f'{source}: "channel_names" keys must be "0".."{len(ch) - 1}", got {list(ch)}')
        block = dataset_json.get("dante")
        if block is None:
            raise DanteConfigError(
                f'{source}: no "dante" block. Add "dante": {{"privileged_channels": ["<channel name>"]}} naming '
                f'the channel(s) available only during training, e.g. the contrast-enhanced scan (channel_names: '
                f'{names})')
        if not isinstance(block, Mapping) or "privileged_channels" not in block:
            raise DanteConfigError(f'{source}: "dante" block must be an object with a "privileged_channels" list, '
                                   f'got {block!r}')
        return cls.from_names(names, block["privileged_channels"], source)


def _case_list(dataset_json: Mapping, key: str, source: str) -> Tuple[str, ...]:
    """``"dante": {key: [case, ...]}`` checked for format (non-empty strings, none twice); () when absent."""
    block = dataset_json.get("dante")
    if not isinstance(block, Mapping) or key not in block:
        return ()
    listed = block[key]
    if not isinstance(listed, Sequence) or isinstance(listed, str) \
            or not all(isinstance(c, str) and c for c in listed):
        raise DanteConfigError(f'{source}: "dante" -> "{key}" must be a list of case identifiers '
                               f'(e.g. "BraTS_0012"), got {listed!r}')
    repeated = sorted({c for c in listed if list(listed).count(c) > 1})
    if repeated:
        raise DanteConfigError(f'{source}: "dante" -> "{key}" lists {repeated} more than once')
    return tuple(listed)


def cases_without_privileged(dataset_json: Mapping, source: str = "dataset.json") -> Tuple[str, ...]:
    """The training cases that have no privileged scan, from ``"dante": {"cases_without_privileged": [...]}``
    (case identifiers, as in imagesTr without the ``_XXXX`` suffix). Empty when the key is absent.

    Those cases still carry a file for each privileged channel (nnU-Net needs one per channel): a
    constant placeholder, e.g. zeros. Only the format is checked here; ``check_cases_without_privileged``
    checks the list against the dataset's cases.
    """
    return _case_list(dataset_json, "cases_without_privileged", source)


def unlabelled_cases(dataset_json: Mapping, source: str = "dataset.json") -> Tuple[str, ...]:
    """The training cases without a label, from ``"dante": {"unlabelled_cases": [...]}``: every channel, and a
    label file that is nnU-Net's ignore label everywhere (``dante_nnunet add-scans``). They are never
    validated on; only a trainer that learns from unlabelled cases trains on them. Refuses the list when the
    dataset.json has no ``"ignore"`` label."""
    listed = _case_list(dataset_json, "unlabelled_cases", source)
    if listed and "ignore" not in dataset_json.get("labels", {}):
        raise DanteConfigError(f'{source}: "dante" -> "unlabelled_cases" needs nnU-Net\'s ignore label in "labels" '
                               f'(their label files are it everywhere)')
    return listed


def check_cases_without_privileged(listed: Sequence[str], cases: Sequence[str], source: str = "dataset.json") -> None:
    """Refuse a list that names a case the dataset does not have, or that names every case (nothing would
    teach the full pathway)."""
    unknown = sorted(set(listed) - set(cases))
    if unknown:
        raise DanteConfigError(f'{source}: "dante" -> "cases_without_privileged" names {unknown[:10]}'
                               f'{" ..." if len(unknown) > 10 else ""} ({len(unknown)} case(s)), which the dataset '
                               f'does not have (its cases: {sorted(cases)[:5]} ...)')
    if cases and set(cases) <= set(listed):
        raise DanteConfigError(f'{source}: "dante" -> "cases_without_privileged" lists every one of the {len(cases)} '
                               f'cases; at least one case needs its privileged scan')


def non_constant_channels(image, channels: Sequence[int], rtol: float = 1e-4) -> Tuple[int, ...]:
    """Which of ``channels`` of ``image`` (channels first; anything indexable by channel, a blosc2 array
    included) are not constant: max - min above ``rtol`` x (1 + max |value|). A placeholder stays constant
    through nnU-Net's resampling and normalisation, up to rounding."""
    bad = []
    for c in channels:
        a = np.asarray(image[c], dtype=np.float64)
        if a.size and (a.max() - a.min()) > rtol * (1.0 + np.abs(a).max()):
            bad.append(c)
    return tuple(bad)
