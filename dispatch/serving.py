"""`fieldpool serve` on every core: API processes that each listen on a socket of their own.

uvicorn's own supervisor hands one listening socket to every process, and
whichever event loop is awake accepts: under a burst of new keep-alive
connections one process took 53 of 64 while the other idled, so a second
core added little. Here each process binds the port with SO_REUSEPORT and
the kernel spreads connections over them evenly.
"""

import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

import structlog
import uvicorn
from uvicorn.config import STARTUP_FAILURE

APP = "dispatch.app:create_app"
# How often the supervisor looks for a process that died, and how long a stopping one may take.
WATCH_EVERY_S = 0.5
STOP_WAIT_S = 30.0

log = structlog.get_logger()


def serve(*, host: str, port: int, processes: int, **options: Any) -> None:
    """Serve the API in `processes` processes (one: in this process), restarting any that dies.

    `options` are uvicorn.Config's. Exits with uvicorn's startup-failure code
    when a process cannot start (a port taken, a broken configuration): a
    restart would fail the same way.
    """
    if processes == 1:
        uvicorn.run(APP, factory=True, host=host, port=port, **options)
        return
    _check_port_free(host, port)
    spawn = multiprocessing.get_context("spawn")
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    children = [_start(spawn, host, port, options) for _ in range(processes)]
    failed = False
    while not stopping.wait(WATCH_EVERY_S):
        for n, child in enumerate(children):
            if child.is_alive():
                continue
            if child.exitcode == STARTUP_FAILURE:
                log.error("api_process_failed_to_start", pid=child.pid)
                failed = True
                stopping.set()
                break
            log.error("api_process_died", pid=child.pid, exitcode=child.exitcode)
            children[n] = _start(spawn, host, port, options)
    _stop(children)
    if failed:
        sys.exit(STARTUP_FAILURE)


def _check_port_free(host: str, port: int) -> None:
    # SO_REUSEPORT would let a second `fieldpool serve` of the same user share the port silently:
    # a plain bind first tells that the port is taken.
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            log.error("port_taken", host=host, port=port, error=str(exc))
            sys.exit(STARTUP_FAILURE)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _start(spawn: Any, host: str, port: int, options: dict[str, Any]) -> BaseProcess:
    child: BaseProcess = spawn.Process(target=_serve_one, args=(host, port, options), name="fieldpool-api")
    child.start()
    return child


def _serve_one(host: str, port: int, options: dict[str, Any]) -> None:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        print(f"cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        sys.exit(STARTUP_FAILURE)
    sock.listen(2048)  # uvicorn's backlog
    uvicorn.Server(uvicorn.Config(APP, factory=True, host=host, port=port, **options)).run(sockets=[sock])


def _stop(children: list[BaseProcess]) -> None:
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)  # uvicorn's graceful shutdown
    deadline = time.monotonic() + STOP_WAIT_S
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join()
