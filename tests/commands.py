"""Running the installed commands (nnUNetv2_*, dante_nnunet) of this environment from tests."""
import os
import subprocess
import sys

BIN = os.path.dirname(sys.executable)
TEST_TRAINERS = os.path.join(os.path.dirname(__file__), "nnunet_trainers")
E2E_DATASET_ID, E2E_CONFIG = 991, "3d_tiny"


def run(cmd, env, ok=True):
    """Run an installed command (nnUNetv2_*, dante_nnunet) of this environment."""
    p = subprocess.run([os.path.join(BIN, cmd[0])] + [str(c) for c in cmd[1:]], env=env, capture_output=True,
                       text=True)
    if ok and p.returncode != 0:
        raise AssertionError(f"{cmd} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p
