"""Writing nnU-Net raw datasets safely: shared by the converters and ``pretrain-dataset``.

A new dataset is written into a hidden temporary folder inside ``nnUNet_raw`` and renamed into place
when complete, so a failure never leaves a half-written dataset, and an existing dataset id is never
overwritten.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator, List, Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk


def resolve_raw_root(raw_root: Optional[str]) -> str:
    if raw_root is not None:
        return raw_root
    from nnunetv2.paths import nnUNet_raw
    if not nnUNet_raw.is_set():
        raise ValueError("nnUNet_raw is not set")
    return str(nnUNet_raw)


def sibling_roots(raw_root: Optional[str]) -> List[str]:
    """nnUNet_preprocessed and nnUNet_results of this environment, when the dataset goes into its
    nnUNet_raw (``raw_root`` None). nnU-Net resolves a dataset id by searching all three folders, so an
    id left there by a removed raw dataset makes every later command fail with "More than one dataset
    name found"."""
    if raw_root is not None:
        return []
    return [os.environ[k] for k in ("nnUNet_preprocessed", "nnUNet_results") if os.environ.get(k)]


def dataset_folders(raw_root: str, dataset_id: int) -> List[str]:
    """The ``DatasetXXX_*`` folders of this id under ``raw_root`` (sorted full paths; none if it is absent)."""
    prefix = f"Dataset{int(dataset_id):03d}_"
    if not os.path.isdir(raw_root):
        return []
    return [os.path.join(raw_root, d) for d in sorted(os.listdir(raw_root)) if d.startswith(prefix)]


def check_new_dataset(raw_root: str, dataset_id: int, name: str, other_roots: Sequence[str] = ()) -> str:
    """The folder name ``DatasetXXX_NAME``; refuses a bad id or name and an id already in use in
    ``raw_root`` or in any of ``other_roots`` (see ``sibling_roots``)."""
    if not (0 < int(dataset_id) < 1000):
        raise ValueError(f"dataset id must be 1..999, got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9]+", name):
        raise ValueError(f"dataset name must be letters and digits, got {name!r}")
    taken = dataset_folders(raw_root, dataset_id)
    if taken:
        raise FileExistsError(f"{taken[0]} already exists; choose another dataset id")
    for root in other_roots:
        taken = dataset_folders(root, dataset_id)
        if taken:
            raise FileExistsError(f"dataset id {int(dataset_id)} is still used by {taken[0]} (nnU-Net would find two "
                                  f"datasets of that id); choose another id or remove that folder")
    return f"Dataset{int(dataset_id):03d}_{name}"


@contextmanager
def new_dataset_folder(raw_root: str, folder_name: str) -> Iterator[str]:
    """Yield a temporary folder with imagesTr/ and labelsTr/; renamed to raw_root/folder_name on success,
    removed on failure."""
    os.makedirs(raw_root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{folder_name}.", dir=raw_root)
    try:
        os.makedirs(os.path.join(tmp, "imagesTr"))
        os.makedirs(os.path.join(tmp, "labelsTr"))
        yield tmp
        os.rename(tmp, os.path.join(raw_root, folder_name))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class UnreadableImageError(ValueError):
    """An image file that cannot be read whole; the message names the case and the file."""


def read_whole(case: str, path: str) -> np.ndarray:
    """Every voxel of an image file, or UnreadableImageError naming the case and the file. NIfTI files
    are read with nibabel, which fails on a file that ends early; SimpleITK's NIfTI reader (and so
    nnU-Net's SimpleITKIO) fills the missing voxels of a truncated file with zeros without an error
    (measured with SimpleITK 2.5.7: ``head -c`` of a .nii.gz), and turns NaN and Inf into 0."""
    try:
        if re.search(r"\.nii(\.gz)?$", path):
            import nibabel
            img = nibabel.load(path)
            arr = np.asanyarray(img.dataobj)
            if int(np.prod(img.shape)) != arr.size:
                raise EOFError(f"{arr.size} of {int(np.prod(img.shape))} voxels")
            return arr
        return sitk.GetArrayFromImage(sitk.ReadImage(path))
    except Exception as e:   # EOFError, zlib/gzip errors, nibabel's header errors, SimpleITK's RuntimeError
        size = os.path.getsize(path) if os.path.isfile(path) else 0
        detail = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UnreadableImageError(f"case {case!r}: {path} cannot be read whole ({size} bytes; {type(e).__name__}"
                                   f"{': ' + detail if detail else ''}): a truncated or corrupt file (an interrupted "
                                   f"copy or download?); replace it or remove the case") from None


def check_image(case: str, path: str) -> np.ndarray:
    """Refuse an image that cannot be read whole (``read_whole``) or that holds NaN or Inf, naming the
    case and the file; returns the voxels. nnU-Net's NibabelIO passes NaN and Inf on (NaN stops its
    preprocessing without naming the file; Inf turns the normalised channel into NaN)."""
    arr = read_whole(case, path)
    if np.issubdtype(arr.dtype, np.floating):
        nan, inf = np.isnan(arr), np.isinf(arr)
        if nan.any() or inf.any():
            kinds = [k for k, m in (("NaN", nan), ("Inf", inf)) if m.any()]
            raise ValueError(f"case {case!r}: {path} holds {int(nan.sum() + inf.sum())} non-finite voxel(s) "
                             f"({' and '.join(kinds)}); fix or remove the case")
    return arr


def geometry(path: str):
    """(size, spacing, origin, direction) from the header only, rounded for comparison."""
    r = sitk.ImageFileReader()
    r.SetFileName(path)
    r.ReadImageInformation()
    return (r.GetSize(), np.round(r.GetSpacing(), 5).tolist(), np.round(r.GetOrigin(), 3).tolist(),
            np.round(r.GetDirection(), 5).tolist())


def size_and_spacing(path: str):
    """(size, spacing rounded to 1e-5) from the image header, or None where SimpleITK cannot read it."""
    try:
        size, spacing, _, _ = geometry(path)
    except RuntimeError:
        return None
    return tuple(size), tuple(spacing)


def check_same_geometry(case: str, files: Sequence[str]) -> None:
    ref = geometry(files[0])
    for f in files[1:]:
        g = geometry(f)
        if g != ref:
            raise ValueError(f"case {case!r}: {os.path.basename(f)} has geometry (size, spacing, origin, direction) "
                             f"{g}, but {os.path.basename(files[0])} has {ref}")


def placeholder_image(reference: sitk.Image) -> sitk.Image:
    """A zero image with ``reference``'s size, spacing, origin, direction and pixel type: the file a case
    without its privileged scan gets for each privileged channel (dataset.json lists the case under
    "dante" -> "cases_without_privileged")."""
    out = sitk.Image(reference.GetSize(), reference.GetPixelID(), reference.GetNumberOfComponentsPerPixel())
    out.CopyInformation(reference)
    return out


def label_values_from_dataset_json(dataset_json: Mapping) -> List[int]:
    """Every label value dataset.json defines (background, ignore and each label or region member)."""
    values = set()
    for value in dataset_json["labels"].values():
        values.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return sorted(values)
