"""Runs moto's server (arguments as for `moto_server`) with request handling serialised by one
lock. moto applies conditional writes without locking, so two concurrent requests could both pass
one condition, which DynamoDB's per-item atomicity rules out. Requests still share keep-alive
connections.

Every test that needs AWS endpoints starts moto through this script: the Rust harness
(shared/fhirlake-aws/src/moto.rs) and the end-to-end suite (tests/e2e/aws_emulator.py).
"""
import sys
import threading

import moto.server as server

_lock = threading.Lock()
_dispatch = server.DomainDispatcherApplication.__call__


def _serialised(self, environ, start_response):
    with _lock:
        return _dispatch(self, environ, start_response)


server.DomainDispatcherApplication.__call__ = _serialised
server.main(sys.argv[1:])
