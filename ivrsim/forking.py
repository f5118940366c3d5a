"""The one way ivrsim starts child processes: multiprocessing's fork server, with ivrsim already imported.

Local workers, each analysis job and each sound-card call's live transcriber are children of a fork server.
A child forked from a server that has numpy, scipy and ivrsim's modules loaded starts in milliseconds; one
from a bare server imports them again (about 1.3 s per analysis job, measured by bench/analysis_speed.py).
The preload takes effect when the process first starts its fork server, so every caller asks for the
context here, and each process (the API, a worker, `ivrsim phone`) gets a preloaded server of its own.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import ForkServerContext

#: What every fork server imports before it forks (each pulls in what it needs: numpy, scipy, the engines).
PRELOAD = ["ivrsim.workers.worker", "ivrsim.analysis.conversation", "ivrsim.engine.listening_process"]


def forkserver_context() -> ForkServerContext:
    """The fork-server context, with ivrsim preloaded in the server it starts."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context  # type: ignore[return-value]
