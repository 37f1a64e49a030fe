"""A bad XLA_FLAGS is one line and exit status 2, not XLA's fatal log and an abort; checking costs a short child
process, only where the user set XLA_FLAGS."""
import os
import re
import subprocess
import sys

import pytest

from badapple_jax.cli import check_xla_flags
from badapple_jax.errors import BadInputError


@pytest.mark.slow
def test_an_unknown_flag_is_one_line_and_status_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "badapple_jax", "render", "demo", "-o", str(tmp_path / "o.mp4"),
                           "--model", "random:gpt2", "--size", "16", "--max-frames", "2"],
                          capture_output=True, text=True, env={**os.environ, "XLA_FLAGS": "--nonsense"}, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == ["badapple-jax: error: XLA_FLAGS '--nonsense' is not understood by XLA: "
                                        "Unknown flag in XLA_FLAGS: --nonsense; fix or unset XLA_FLAGS."]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flags, said", [
    ("--xla_cpu_enable_fast_math=false", None),
    ("--xla_force_host_platform_device_count=2 --xla_cpu_experimental_ynn_fusion_type=", None),
    ("--xla_cpu_enable_fast_math=maybe", "Couldn't interpret value maybe for flag xla_cpu_enable_fast_math;"),
    ("--xla_dump_to=/nowhere --xla_nonsense=1", "Unknown flag in XLA_FLAGS: --xla_nonsense=1;"),
])
def test_flags_are_parsed_by_xla_in_a_child(flags, said, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", flags)
    if said is None:
        check_xla_flags()
    else:
        with pytest.raises(BadInputError, match=re.escape(f"XLA_FLAGS '{flags}' is not understood by XLA: {said}")):
            check_xla_flags()


@pytest.mark.parametrize("flags", [None, " "])
def test_no_child_where_the_user_set_no_flags(flags, monkeypatch):
    if flags is None:
        monkeypatch.delenv("XLA_FLAGS", raising=False)
    else:
        monkeypatch.setenv("XLA_FLAGS", flags)  # set, but empty
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a child process was started"))
    check_xla_flags()
