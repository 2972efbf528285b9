"""critest, Kubernetes' CRI validation suite, with runtime handler `runc` and then `lxcfs`.

Every case that passes with containerd's stock handler must pass with ours. CI runs the focused
subset CI_FOCUS (the runtime-facing groups; see README "critest" for the timing that chose it);
the whole suite is `python tests/critest_run.py` (tests/critest_run.py documents the setup).
"""

from __future__ import annotations

import pytest
from critest_run import run

pytestmark = pytest.mark.e2e

#: The groups that exercise the shim's task API most per second (runc, full run: 56 of 85
#: cases, ~60 of 112 s): sandboxes, container lifecycle/exec/logs/stats, streaming, OOM,
#: mounts, idempotent stop/remove. The full run adds Security Context and images (README).
CI_FOCUS = r"PodSandbox|Container runtime|Streaming|Container OOM|Container Mount|Idempotence"


def test_critest_lxcfs_passes_what_runc_passes():
    from conftest import _require_e2e_prerequisites

    _require_e2e_prerequisites()
    try:
        base = run("runc", CI_FOCUS)
        ours = run("lxcfs", CI_FOCUS)
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    print(base.summary())
    print(ours.summary())
    assert base.passed, f"critest ran nothing with runc: {base.summary()}"
    regressions = sorted(set(base.passed) - set(ours.passed))
    assert not regressions, (
        f"pass with runc but not with lxcfs ({ours.summary()}):\n  "
        + "\n  ".join(f"{n}: {ours.failed.get(n, 'not run')}" for n in regressions)
    )
