"""Run the HTTP service's app (:func:`transferkit.serve.create_app`) with uvicorn in a background thread on a (free)
loopback port — for tests and benchmarks — and shut it down cleanly (``transferkit serve`` itself blocks in the
foreground instead). uvicorn is imported only when a server starts.
"""

from __future__ import annotations

import threading
import time
from typing import Any


def start_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, startup_timeout_s: float = 20.0,
                    log_level: str = "warning") -> tuple[Any, threading.Thread, int]:
    """Run ``app`` with uvicorn in a daemon thread; return ``(server, thread, port)`` once it accepts connections.

    ``port=0`` lets the OS pick a free port (the returned one is the real port). The header and keep-alive
    timeouts come from the app's :class:`~transferkit.serve.ServiceLimits` (``app.state.limits``). Stop with
    :func:`stop_thread` (``server.should_exit = True; thread.join()``). Raises ``RuntimeError`` if it does not
    start in time.
    """
    import uvicorn

    from transferkit.serve import uvicorn_options

    limits = getattr(getattr(app, "state", None), "limits", None)  # create_app's: its connection timeouts
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=5, **uvicorn_options(limits))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"transferkit-serve-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(5)
            raise RuntimeError(f"the server on {host}:{port} did not start within {startup_timeout_s:g} s")
        time.sleep(0.01)
    real_port = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
    return server, thread, int(real_port)


def stop_thread(server: Any, thread: threading.Thread, timeout_s: float = 10.0) -> bool:
    """Ask the server started by :func:`start_in_thread` to exit and wait; ``True`` if the thread ended."""
    server.should_exit = True
    thread.join(timeout_s)
    return not thread.is_alive()
