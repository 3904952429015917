"""Running the CLI in process and checking its bad-input contract: shared by the CLI tests."""
from __future__ import annotations

from perfsim.cli import main


def cli_run(capsys, *args):
    """``perfsim ARGS`` in process: (exit status, stdout, stderr)."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_input_error(rc, out, err, *needles):
    """Bad input: exit 2, exactly one ``perfsim: error:`` line naming each needle, nothing on stdout."""
    assert rc == 2, (rc, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("perfsim: error: "), err
    assert "Traceback" not in err + out and out == ""
    for n in needles:
        assert n in lines[0], (n, lines[0])
