import os
import tempfile

# Always a scratch folder, whatever the user's environment says, so that tests never write into a
# real nnUNet_results (set before any test imports nnunetv2).
_ROOT = tempfile.mkdtemp(prefix="dante_tests_")
for _k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
    os.environ[_k] = os.path.join(_ROOT, _k)
    os.makedirs(os.environ[_k])
os.environ.pop("nnUNet_extTrainer", None)
os.environ.setdefault("nnUNet_n_proc_DA", "1")
os.environ.setdefault("nnUNet_def_n_proc", "1")
