import os
import tempfile

# nnunetv2.paths reads these at import time: point them at a scratch folder before any test imports it
_ROOT = tempfile.mkdtemp(prefix="dante_tests_")
for _k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
    os.environ.setdefault(_k, os.path.join(_ROOT, _k))
    os.makedirs(os.environ[_k], exist_ok=True)
os.environ.setdefault("nnUNet_n_proc_DA", "1")
os.environ.setdefault("nnUNet_def_n_proc", "1")
