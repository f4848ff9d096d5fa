"""The job layer's command runner (``nnunet_jobs.run_command``: the demo's and the benchmark's steps):
the log's path before the step starts, nnU-Net's progress lines echoed while it runs, the whole output
in the log, a failure that shows the log's tail. (The demo itself runs in
about 4 minutes through scripts/demo.sh; the filter is matched against a real nnU-Net training log in
test_end_to_end.py.)"""
import sys

import pytest

from dante_nnunet.jobs.nnunet_jobs import run_command

SCRIPT = ("import sys, time; "
          "print('noise 1'); print('2026-11-24 07:00:00.000000: Epoch 3'); print('noise 2'); "
          "print('2026-11-24 07:00:01.000000: train_loss -0.41'); sys.stdout.flush(); time.sleep(0.2); "
          "print('2026-11-24 07:00:02.000000: Pseudo dice [0.5, 0.6, 0.7]'); "
          "sys.exit(int(sys.argv[1]))")


def test_step_names_its_log_first_echoes_progress_and_logs_everything(tmp_path, capsys):
    log = str(tmp_path / "step.log")
    seconds = run_command([sys.executable, "-c", SCRIPT, "0"], {}, log).seconds
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"$ {sys.executable} -c") and out[1] == f"  log: {log}"
    echoed = [line.strip() for line in out[2:-1]]
    assert [e.split(": ", 1)[1] for e in echoed] == ["Epoch 3", "train_loss -0.41", "Pseudo dice [0.5, 0.6, 0.7]"]
    assert out[-1].startswith("  done in ") and seconds >= 0.2
    assert open(log).read().count("noise") == 2   # everything is in the log


def test_a_failed_step_raises_with_the_tail_of_its_log(tmp_path, capsys):
    log = str(tmp_path / "step.log")
    with pytest.raises(RuntimeError, match=r"command failed \(3\)") as e:
        run_command([sys.executable, "-c", SCRIPT, "3"], {}, log)
    assert f"--- last output ({log}) ---" in str(e.value) and "noise 2" in str(e.value)
    assert "done in" not in capsys.readouterr().out
