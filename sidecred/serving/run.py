"""Running a sidecred TLS server (the webhook, the broker): serve, drain on SIGTERM."""

from __future__ import annotations

import gc
import ssl
from typing import Any

from sidecred.serving.drain import CloseWhileDraining, Drain, DrainingServer
from sidecred.serving.limits import server_config


def serve_tls(app: Any, host: str, port: int, tls: ssl.SSLContext, drain: Drain) -> int:
    """Serve `app` on host:port until a signal (see serving.drain).

    uvicorn exits the process (status 3) when it cannot listen, after logging why.
    """
    app.add_middleware(CloseWhileDraining, drain=drain)
    # What start-up made (the kubernetes client's models, mostly) lives as long as the
    # process: kept out of the collector's full passes, which otherwise walk it whenever
    # a huge request's objects come and go, the event loop waiting ~50 ms each time.
    gc.freeze()
    DrainingServer(server_config(app, host, port, tls), drain).run()
    return 0
