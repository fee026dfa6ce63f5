"""Where a search's time goes: consecutive phases that add up to the wall time, the decode
marked from inside the data stage, and the line the summary prints."""

from __future__ import annotations

import time

import pytest

from autofusion import phases
from autofusion.phases import Phases, phase_line, process_started


def test_phases_are_consecutive_and_add_up_to_the_time_since_the_start():
    start = time.time() - 2.0  # the process started two seconds ago
    p = Phases(start)
    p.enter("data")
    with phases.timing(p):
        with phases.during("decode"):  # as data/rows.py marks it
            time.sleep(0.05)
    p.enter("trials")
    time.sleep(0.02)
    p.enter("data")  # a phase visited twice adds up
    seconds = p.snapshot()
    assert list(seconds) == ["startup", "data", "decode", "trials"]  # the phases' own order
    assert seconds["startup"] >= 2.0 and seconds["decode"] >= 0.05 and seconds["trials"] >= 0.02
    assert sum(seconds.values()) == pytest.approx(time.time() - start, abs=0.01)


def test_a_stepped_wall_clock_does_not_move_the_phases(monkeypatch):
    """The wall clock jumps two minutes forward during the start-up (NTP, a virtual machine
    catching up): the phases, on the monotonic clock, still say what elapsed."""
    p = Phases(time.time() - 1.0)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 120.0)
    p.enter("data")
    assert 1.0 <= p.snapshot()["startup"] < 2.0


def test_marking_a_phase_without_a_search_being_timed_does_nothing():
    with phases.during("decode"):  # autofusion data inspect: no search
        pass
    p = Phases()
    with phases.timing(p):
        pass
    with phases.during("decode"):  # the block above ended: no search is timed any more
        pass
    assert "decode" not in p.snapshot()


def test_an_unknown_phase_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown phase 'decoding'; known: startup, data, decode"):
        Phases().enter("decoding")


def test_the_line_names_the_phases_in_words_and_leaves_out_the_instant_ones():
    line = phase_line({"startup": 2.14, "data": 0.01, "ray": 3.0, "trials": 20.0, "shutdown": 1.26})
    assert line == "start-up 2.1s · Ray start 3.0s · trials 20.0s · shutdown 1.3s = 26.4s"


def test_the_process_start_is_read_from_linux():
    started = process_started()
    assert started is not None and time.time() - 3600 * 24 < started <= time.time()


def test_a_process_that_ran_something_else_first_counts_from_its_import(tmp_path):
    """``bash -c 'sleep 7 && exec python ...'``, as a shell runs the last command of ``a && b``:
    the process started 7 s before the program did, which counts from its import."""
    import subprocess
    import sys

    code = "import time, autofusion.phases as p; print(time.time() - p.process_started())"
    out = subprocess.run(["bash", "-c", f"sleep {phases.LAUNCH_S + 2} && exec {sys.executable} -c '{code}'"],
                         capture_output=True, text=True, check=True, cwd=tmp_path)
    assert 0 <= float(out.stdout) < 5, out.stdout
