from __future__ import annotations

import gc
import threading

from backpain_cds.gc_pause import GcPauseMiddleware


def test_the_collector_is_off_during_a_request_and_back_on_after():
    seen = []

    def app(environ, start_response):
        seen.append(gc.isenabled())
        return [b"ok"]

    assert gc.isenabled()
    GcPauseMiddleware(app)({}, lambda *a: None)
    assert seen == [False]
    assert gc.isenabled()


def test_overlapping_requests_keep_it_off_until_the_last_one_ends():
    inside = threading.Event()
    release = threading.Event()
    states = []

    def app(environ, start_response):
        if environ.get("slow"):
            inside.set()
            release.wait(5)
        states.append(gc.isenabled())
        return [b""]

    middleware = GcPauseMiddleware(app)
    slow = threading.Thread(target=middleware, args=({"slow": True}, None))
    slow.start()
    inside.wait(5)
    middleware({}, None)
    assert gc.isenabled() is False  # the slow one is still in flight
    release.set()
    slow.join(5)
    assert gc.isenabled() is True
    assert states == [False, False]


def test_an_exception_still_re_enables_the_collector():
    def app(environ, start_response):
        raise RuntimeError("boom")

    try:
        GcPauseMiddleware(app)({}, None)
    except RuntimeError:
        pass
    assert gc.isenabled()
