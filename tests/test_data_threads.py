"""jepa.data.threads: a batch's items on several threads, in order, one pool per process."""

import multiprocessing
import threading
import time

import pytest

from jepa.data.threads import check_threads, load_many


def test_items_come_back_in_key_order_on_several_threads():
    names = set()
    barrier = threading.Barrier(3, timeout=30)

    def load(key):
        names.add(threading.current_thread().name)
        if key < 3:
            barrier.wait()  # only passes if three loads run at the same time
        time.sleep(0.01 * (5 - key))
        return key * 10

    assert list(load_many(load, range(6), threads=3)) == [0, 10, 20, 30, 40, 50]
    assert len(names) == 3 and all(n.startswith("jepa-decode") for n in names)


def test_one_thread_loads_inline():
    main = threading.current_thread().name
    assert list(load_many(lambda k: (k, threading.current_thread().name), [4, 5], threads=1)) == [(4, main), (5, main)]


def test_the_first_failing_key_raises_as_the_loop_would():
    def load(key):
        if key in (2, 4):
            raise KeyError(key)
        return key

    with pytest.raises(KeyError, match="2"):
        list(load_many(load, range(6), threads=2))


def _child(queue):
    queue.put(list(load_many(lambda k: k + 1, range(4), threads=2)))


def test_a_forked_worker_builds_its_own_pool():
    list(load_many(lambda k: k, range(4), threads=2))  # the parent's pool exists before the fork
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(60)
    assert child.exitcode == 0, "the child hung or failed on the parent's pool"
    assert queue.get(timeout=5) == [1, 2, 3, 4]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(ValueError, match="decode_threads"):
        check_threads(bad)
