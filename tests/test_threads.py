"""Recording is per thread (issue 18): a tape, a ForwardAccumulator or a ``difftape.function`` trace
entered in one thread records that thread's operations only.

Each concurrent test runs the same computation in several threads at once, many times, with the
interpreter switching threads as often as it can (``sys.setswitchinterval``), and compares every
answer with the one computed single-threaded beforehand. With one list of recorders shared by all
threads these fail on nearly every run (gradients of other threads' ops, or None); each is bounded
to about a second.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import difftape as dt
from difftape.engine.tape import active_recorders
from difftape.errors import DifftapeError

N_THREADS = 4
SECONDS = 0.5  # each concurrent test repeats its computation for about this long per thread


@pytest.fixture(autouse=True)
def _switch_often() -> Iterator[None]:
    """Switch threads every few bytecodes, so that interleavings inside one op's recording happen."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _in_threads(work: Callable[[int], Any], n: int = N_THREADS) -> list[Any]:
    """``work(i)`` in thread i for i < n, all started together; what each answered (a failure re-raised here)."""
    start = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        except BaseException as exc:  # (reported in the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive(), "a thread did not finish"
    if errors:
        raise errors[0]
    return results


def _repeat(step: Callable[[], None]) -> int:
    """Run ``step`` for about SECONDS (at least twice); how many times it ran."""
    count = 0
    deadline = time.monotonic() + SECONDS
    while count < 2 or time.monotonic() < deadline:
        step()
        count += 1
    return count


def chain(x: Any, w: Any) -> Any:
    """Unary, binary (tensor-tensor, tensor-number) and parametrised ops: every recording path."""
    y = x
    for k in range(6):
        y = dt.sin(y) * w + 0.25 * k
        y = dt.tanh(y * x) - x
        y = dt.reshape(dt.exp(-y * y), (-1,))
        y = dt.reshape(y, x.shape) + dt.sum(y * 0.1)
    return dt.sum(y * y)


def _inputs(i: int) -> tuple[Any, Any]:
    x = dt.constant(np.linspace(-1.0, 1.0, 3) + 0.3 * i)
    w = dt.Variable(0.5 + 0.1 * i, name=f"w{i}")
    return x, w


def _close(got: Any, want: Any) -> None:
    assert got is not None, "a gradient is None"
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=0)


def _gradients(i: int) -> tuple[Any, Any, Any]:
    x, w = _inputs(i)
    with dt.Tape() as tape:
        tape.watch(x)
        y = chain(x, w)
    gx, gw = tape.gradient(y, [x, w])
    return y.numpy(), gx.numpy(), gw.numpy()


def test_threads_each_with_their_own_tape_get_their_own_gradients() -> None:
    want = [_gradients(i) for i in range(N_THREADS)]

    def work(i: int) -> int:
        def step() -> None:
            for got, expected in zip(_gradients(i), want[i]):
                _close(got, expected)

        return _repeat(step)

    assert min(_in_threads(work)) >= 2


def _second(i: int) -> tuple[Any, Any]:
    """Nested tapes: the outer records the inner's backward pass (second derivatives)."""
    x, w = _inputs(i)
    with dt.Tape() as outer:
        outer.watch(x)
        with dt.Tape() as inner:
            inner.watch(x)
            y = chain(x, w)
        g = inner.gradient(y, x)
        s = dt.sum(g * g)
    return g.numpy(), outer.gradient(s, x).numpy()


def test_nested_tapes_in_threads() -> None:
    want = [_second(i) for i in range(N_THREADS)]

    def work(i: int) -> int:
        def step() -> None:
            for got, expected in zip(_second(i), want[i]):
                _close(got, expected)

        return _repeat(step)

    assert min(_in_threads(work)) >= 2


def _persistent(i: int) -> tuple[Any, ...]:
    x, w = _inputs(i)
    with dt.Tape(persistent=True) as tape:
        tape.watch(x)
        y = chain(x, w)
        z = dt.sum(dt.cos(x) * w)
    gy = tape.gradient(y, x)
    gz = tape.gradient(z, [x, w])
    jac = tape.jacobian(dt.sin(x) * w, x)  # (recorded after the block: not on the tape, so zeros)
    return gy.numpy(), gz[0].numpy(), gz[1].numpy(), jac.numpy()


def test_persistent_tapes_in_threads() -> None:
    want = [_persistent(i) for i in range(N_THREADS)]
    assert not np.any(want[0][3])  # (what the serial run says of an op outside the block)

    def work(i: int) -> int:
        def step() -> None:
            for got, expected in zip(_persistent(i), want[i]):
                _close(got, expected)

        return _repeat(step)

    assert min(_in_threads(work)) >= 2


@dt.function
def _traced_loss(x: Any, w: Any) -> Any:
    return chain(x, w)


def _through_function(i: int) -> tuple[Any, Any]:
    """A shared ``difftape.function``, replayed on each thread's own tape (and traced by whichever comes first)."""
    x, w = _inputs(i)
    with dt.Tape() as tape:
        tape.watch(x)
        y = _traced_loss(x, w)
    gx, gw = tape.gradient(y, [x, w])
    return gx.numpy(), gw.numpy()


def test_function_replays_on_tapes_in_threads() -> None:
    want = [_gradients(i)[1:] for i in range(N_THREADS)]  # what eager execution answers

    def work(i: int) -> int:
        def step() -> None:
            for got, expected in zip(_through_function(i), want[i]):
                _close(got, expected)

        return _repeat(step)

    assert min(_in_threads(work)) >= 2


def test_new_functions_first_called_in_threads_at_once() -> None:
    """Every thread calls the same new functions in the same order: each is traced, compiled and
    first replayed on a tape by several threads at once (the compiled replay is made on first use)."""
    fresh = [dt.function(lambda x, w, k=k: chain(x, w) * (1.0 + k)) for k in range(12)]
    want = [[np.asarray(g) * (1.0 + k) for g in _gradients(i)[1:]] for k in range(len(fresh))
            for i in range(N_THREADS)]

    def work(i: int) -> int:
        x, w = _inputs(i)
        for k, f in enumerate(fresh):
            with dt.Tape() as tape:
                tape.watch(x)
                y = f(x, w)
            for got, expected in zip(tape.gradient(y, [x, w]), want[k * N_THREADS + i]):
                _close(got, expected)
        return len(fresh)

    assert _in_threads(work) == [len(fresh)] * N_THREADS


def test_a_replay_compiled_in_one_thread_is_whole_when_another_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded replay is made on its first use; a thread calling it meanwhile must not find it
    half made (its tape entries missing: a TypeError). The making is slowed here to show it."""
    from difftape.engine import tracing

    f = dt.function(lambda x: dt.sum(dt.sin(x) * x))
    x = dt.constant(np.array([0.5, -1.0]))
    f(x)  # traced (and replayed without a tape): the recorded replay is not made yet
    making, made = threading.Event(), threading.Event()

    class Slow(tracing._Composite):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            if not making.is_set():  # the first thread to make it waits here, half way
                making.set()
                made.wait(10)

    monkeypatch.setattr(tracing, "_Composite", Slow)

    def grad() -> Any:
        with dt.Tape() as tape:
            tape.watch(x)
            y = f(x)
        return tape.gradient(y, x).numpy()

    def first(a_done: threading.Event, b_done: threading.Event) -> Any:
        return grad()

    def second(a_done: threading.Event, b_done: threading.Event) -> Any:
        assert making.wait(10)
        try:
            return grad()
        finally:
            made.set()

    want = np.cos(x.numpy()) * x.numpy() + np.sin(x.numpy())
    for got in _sequenced(first, second):
        _close(got, want)


def _branchy(x: Any) -> Any:
    y = x
    for _ in range(10):  # (long enough that traces in other threads run meanwhile)
        y = dt.tanh(y) * 0.5 + y
    if float(dt.sum(y)) > 0:  # a Python decision on a traced value: the trace guards it
        return dt.sin(x) * 2.0
    return dt.cos(x) * -3.0


def test_traces_in_threads_keep_their_own_guards_and_tapes() -> None:
    """Each thread traces functions of its own while the others trace and record on tapes: every
    trace keeps the guards its own body made, and tapes in other threads keep recording meanwhile."""
    pos, neg = np.array([0.5, 0.25]), np.array([-0.5, -0.25])
    want = {k: _branchy(dt.constant(v)).numpy() for k, v in (("pos", pos), ("neg", neg))}
    grads = [_gradients(i) for i in range(N_THREADS)]

    def work(i: int) -> int:
        def step() -> None:
            if i:  # tracing: a new function each time, so each call traces
                f = dt.function(_branchy)
                _close(f(dt.constant(pos)).numpy(), want["pos"])
                _close(f(dt.constant(neg)).numpy(), want["neg"])  # the guard sends it to a second trace
                assert f.trace_count == 2
            else:
                for got, expected in zip(_gradients(i), grads[i]):
                    _close(got, expected)

        return _repeat(step)

    assert min(_in_threads(work)) >= 2


def _jvp(i: int) -> Any:
    x, w = _inputs(i)
    with dt.ForwardAccumulator(x, dt.constant(np.ones(3))) as acc:
        y = chain(x, w)
    return acc.jvp(y).numpy()


def test_forward_accumulators_in_threads() -> None:
    want = [(_jvp(i), _gradients(i)) for i in range(N_THREADS)]

    def work(i: int) -> int:
        def step() -> None:  # forward mode, and a tape, in every thread
            _close(_jvp(i), want[i][0])
            for got, expected in zip(_gradients(i), want[i][1]):
                _close(got, expected)

        return _repeat(step)

    assert min(_in_threads(work)) >= 2


def _sequenced(first: Callable[[threading.Event, threading.Event], Any],
               second: Callable[[threading.Event, threading.Event], Any]) -> tuple[Any, Any]:
    """``first`` in a thread and ``second`` in another, stepping in turn through two events."""
    a_done, b_done = threading.Event(), threading.Event()
    return tuple(_in_threads(lambda i: (first, second)[i](a_done, b_done), 2))


def test_a_tape_does_not_record_another_threads_ops() -> None:
    x = dt.constant(2.0)
    shared: dict[str, Any] = {}

    def recording(a_done: threading.Event, b_done: threading.Event) -> Any:
        with dt.Tape() as tape:
            tape.watch(x)
            mine = x * x
            a_done.set()
            assert b_done.wait(10)  # the other thread computes while this tape is open
            theirs = shared["y"]
            inside = list(active_recorders())
        return tape.gradient([mine, theirs], x), inside

    def other(a_done: threading.Event, b_done: threading.Event) -> Any:
        assert a_done.wait(10)
        shared["y"] = dt.sin(x) * 3.0 + x  # x is watched by the other thread's tape, not here
        seen = list(active_recorders())
        b_done.set()
        return seen

    (grad, inside), seen = _sequenced(recording, other)
    assert grad.numpy() == pytest.approx(4.0)  # d(x*x)/dx only: the other thread's ops are not on the tape
    assert len(inside) == 1 and seen == []
    assert list(active_recorders()) == []


def test_a_tensor_from_another_threads_tape_is_untracked_here() -> None:
    """Used in a thread without a tape it is a plain value (numpy may take it); on this thread's
    own tape it is tracked only if watched here."""
    x = dt.constant([1.0, 2.0])

    def recording(a_done: threading.Event, b_done: threading.Event) -> Any:
        with dt.Tape() as tape:
            tape.watch(x)
            a_done.set()
            assert b_done.wait(10)
        return tape.gradient(dt.sum(x * x), x)  # (computed after the block: not recorded)

    def other(a_done: threading.Event, b_done: threading.Event) -> Any:
        assert a_done.wait(10)
        try:
            median = np.median(x)  # refused on a watched tensor; not watched in this thread
            with dt.Tape() as tape:
                y = dt.sum(x * x)
                unwatched = tape.gradient(y, x)
            with dt.Tape() as tape:
                tape.watch(x)
                y = dt.sum(x * x)
                watched = tape.gradient(y, x)
        finally:
            b_done.set()
        return median, unwatched, watched

    outside, (median, unwatched, watched) = _sequenced(recording, other)
    assert outside is None
    assert median == pytest.approx(1.5)
    assert unwatched is None
    np.testing.assert_allclose(watched.numpy(), [2.0, 4.0])
    with dt.Tape() as tape:  # in the thread that records, numpy on a watched tensor is still refused
        tape.watch(x)
        with pytest.raises(DifftapeError, match="tape is watching"):
            np.median(x)


def test_stop_recording_pauses_only_this_threads_tape() -> None:
    x = dt.constant(3.0)
    shared: dict[str, Any] = {}

    def recording(a_done: threading.Event, b_done: threading.Event) -> Any:
        with dt.Tape() as tape:
            tape.watch(x)
            a_done.set()
            assert b_done.wait(10)  # the other thread pauses its own tape and computes meanwhile
            y = x * x * x
        return tape.gradient([y, shared["hidden"]], x)

    def pausing(a_done: threading.Event, b_done: threading.Event) -> Any:
        assert a_done.wait(10)
        try:
            with dt.Tape(persistent=True) as tape:
                tape.watch(x)
                with tape.stop_recording():
                    hidden = shared["hidden"] = x * x
                    inside = list(active_recorders())
                seen = x * 5.0  # recording again after the pause
        finally:
            b_done.set()
        return tape.gradient(hidden, x), inside, tape.gradient(seen, x)

    grad, (hidden, inside, seen) = _sequenced(recording, pausing)
    assert hidden is None  # paused here: not recorded
    assert inside == []  # (nothing of the other thread's records here)
    assert seen.numpy() == pytest.approx(5.0)
    assert grad.numpy() == pytest.approx(27.0)  # the paused thread's op is not on the other thread's tape


def test_a_tape_recording_in_one_thread_cannot_be_entered_in_another() -> None:
    tape = dt.Tape()

    def owner(a_done: threading.Event, b_done: threading.Event) -> Any:
        with tape:
            a_done.set()
            assert b_done.wait(10)
        return True

    def intruder(a_done: threading.Event, b_done: threading.Event) -> Any:
        assert a_done.wait(10)
        try:
            with pytest.raises(DifftapeError, match="another thread"):
                tape.__enter__()
        finally:
            b_done.set()
        return list(active_recorders())

    done, seen = _sequenced(owner, intruder)
    assert done and seen == []
    x = dt.constant(2.0)
    with tape:  # once the first thread is done with it, any thread may use it
        tape.watch(x)
        y = x * x
    assert tape.gradient(y, x).numpy() == pytest.approx(4.0)


def test_a_thread_that_ends_inside_a_tape_leaves_nothing_recording() -> None:
    tape = dt.Tape()
    x = dt.constant(2.0)

    def leave_open(i: int) -> None:
        tape.__enter__()  # never exited: the thread ends with the tape still entered
        tape.watch(x)

    _in_threads(leave_open, 1)
    import gc

    gc.collect()
    from difftape.engine import tape as tape_module

    assert tape_module._ACTIVE == []  # (no op anywhere pays for a recorder nobody can exit)
    with tape:
        y = x * 3.0
    assert tape.gradient(y, x).numpy() == pytest.approx(3.0)


def test_a_thread_end_at_interpreter_shutdown_says_nothing(monkeypatch):
    """After Ctrl-C mid-run the main thread's state can be dropped after the module's globals are gone
    (``_ACTIVE`` is None): its clean-up printed 'Exception ignored ... AttributeError' under the one-line
    interrupt message."""
    import difftape.engine.tape as tape_module

    end = tape_module._ThreadEnd([tape_module.Tape()])
    monkeypatch.setattr(tape_module, "_ACTIVE", None)
    try:
        end.__del__()
    except Exception as err:  # noqa: BLE001 (it raised AttributeError: 'NoneType' object has no attribute 'remove')
        raise AssertionError(f"clean-up at shutdown raised {err!r}") from err
