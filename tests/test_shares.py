"""service/shares.py: when a worker leaves new connections to the others (the process test is in test_server.py)."""
from __future__ import annotations

import itertools
import os

from service.shares import SLACK, STALE_SECONDS, Share, Shares


def test_a_worker_holding_more_than_slack_beyond_the_least_loaded_other_is_held_back():
    shares = Shares(3)
    shares.publish(1, 10, now=100.0)
    shares.publish(2, 4, now=100.0)
    assert not shares.held_back(0, 4 + SLACK, now=100.1)
    assert shares.held_back(0, 4 + SLACK + 1, now=100.1)
    assert not shares.held_back(2, 4, now=100.1)


def test_workers_that_do_not_accept_now_do_not_count():
    shares = Shares(3)
    shares.publish(1, 0, now=100.0)  # its last refresh too long ago: hung, or gone
    shares.publish(2, 1, now=100.0 + STALE_SECONDS)
    assert shares.held_back(0, 1 + SLACK + 1, now=100.0 + STALE_SECONDS)  # compared with worker 2 only
    Share(shares, 2).leave()  # draining
    assert not shares.held_back(0, 1_000, now=100.0 + STALE_SECONDS)  # nobody else accepts: never held back
    assert not Shares(1).held_back(0, 1_000)  # a lone worker


def test_the_least_loaded_worker_is_never_held_back_so_one_always_accepts():
    for counts in itertools.product(range(0, 9, 2), repeat=3):
        shares = Shares(3)
        for index, count in enumerate(counts):
            shares.publish(index, count, now=50.0)
        held = [shares.held_back(index, count, now=50.0) for index, count in enumerate(counts)]
        assert not held[counts.index(min(counts))], counts


def test_the_slots_are_shared_with_forked_workers():
    shares = Shares(2)
    pid = os.fork()
    if pid == 0:  # the worker
        Share(shares, 1).publish(7)
        os._exit(0)
    os.waitpid(pid, 0)
    assert Share(shares, 0).held_back(7 + SLACK + 1) and not Share(shares, 0).held_back(7 + SLACK)
