import os
import tempfile

import pytest

# Always a scratch folder, whatever the user's environment says, so that tests never write into a
# real nnUNet_results (set before any test imports nnunetv2).
_ROOT = tempfile.mkdtemp(prefix="dante_tests_")
for _k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
    os.environ[_k] = os.path.join(_ROOT, _k)
    os.makedirs(os.environ[_k])
os.environ.pop("nnUNet_extTrainer", None)
os.environ.setdefault("nnUNet_n_proc_DA", "1")
os.environ.setdefault("nnUNet_def_n_proc", "1")
# nnUNetv2_predict without worker processes (its sequential path, -npp 0 -nps 0): each spawned worker
# imports torch and nnU-Net again, which costs more than predicting a few tiny cases
os.environ.setdefault("nnUNet_npp", "0")
os.environ.setdefault("nnUNet_nps", "0")
# OpenMP threads that wait yield the core instead of spinning (set before torch loads its OpenMP): with two
# test workers on two cores a spinning 2-thread op waits for a time slice (instance norm of a 16^3 patch:
# 0.1 ms alone, 11-24 ms beside another busy process; 0.2 ms with this)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tests.support import E2E_CONFIG, E2E_DATASET_ID, TEST_TRAINERS, run  # noqa: E402


@pytest.fixture(scope="session")
def e2e_dataset(tmp_path_factory):
    """A BraTS-like 4-channel phantom (``--kind rim``, T1ce privileged), planned and preprocessed by the
    stock command, with a tiny configuration (16^3 patch, widths 8..64) added to its plans; shared by the
    end-to-end modules."""
    from batchgenerators.utilities.file_and_folder_operations import join
    from dante_nnunet.jobs.nnunet_jobs import add_configuration, nnunet_environment
    from dante_nnunet.data.phantom import write_phantom

    root = tmp_path_factory.mktemp("e2e")
    env = nnunet_environment(base=dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "pre"),
                                       nnUNet_results=str(root / "res")), trainer_folders=[TEST_TRAINERS])
    raw = write_phantom("rim", E2E_DATASET_ID, "DANTEe2e", num_train=8, num_test=2, seed=1, shape=(32, 32, 32),
                        raw_root=env["nnUNet_raw"])
    run(["nnUNetv2_plan_and_preprocess", "-d", E2E_DATASET_ID, "-c", "3d_fullres", "-np", "1", "-npfp", "1"], env)
    name = os.path.basename(raw)
    add_configuration(join(env["nnUNet_preprocessed"], name, "nnUNetPlans.json"), E2E_CONFIG,
                      features_per_stage=[8, 16, 32, 64], patch_size=[16, 16, 16])
    return {"root": root, "env": env, "raw": raw, "name": name}


# ---- the fast lane (`pytest -m "not slow"`): every test that trains, plans, compiles or runs an nnU-Net
# command is marked slow; end-to-end tests and users of the planned phantom are marked here
_SLOW_FIXTURES = {"e2e_dataset"}
_FAST_LANE_LIMIT_S = 5.0


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("e2e") or _SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Names the unmarked tests that took longer than the fast lane allows, so they get marked."""
    slow = []
    for reports in terminalreporter.stats.values():
        for r in reports:
            if getattr(r, "when", None) == "call" and "slow" not in getattr(r, "keywords", {}) \
                    and r.duration > _FAST_LANE_LIMIT_S:
                slow.append((r.duration, r.nodeid))
    if slow:
        terminalreporter.write_line(f"unmarked tests over {_FAST_LANE_LIMIT_S:.0f} s (mark them "
                                    f"@pytest.mark.slow to keep the fast lane fast):")
        for duration, nodeid in sorted(slow, reverse=True):
            terminalreporter.write_line(f"  {duration:.1f} s {nodeid}")
