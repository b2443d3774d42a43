"""RhizOS from Python: flows, plans, embedded runs, matching, the ledger and
the vault, over librhizos (ctypes; no compiler needed).

    import rhizos
    flow = rhizos.load_flow("examples/flows/wordcount.yaml")
    assert flow.validate() == []
    print(flow.plan())                 # [['source'], ['split'], ...]
    result = rhizos.run(flow, {"text": "to be or not to be"})
    print(result.status, result.outputs)

    with rhizos.Client("http://127.0.0.1:8080", api_key) as client:
        dep = client.deploy(flow)
        for status in client.watch(dep):
            print(status["status"])

See docs/bindings.md.
"""
from __future__ import annotations

from ._lib import LibraryNotFound
from ._lib import path as library_path
from ._lib import version as library_version
from .client import Client, Job
from .errors import (AlreadyExists, AuthError, ClosedError, ConnectError,
                     CycleError, Error, ExecError, InsufficientFunds,
                     InvalidArgument, NotFound, ParseError, PermissionDenied,
                     ProtocolError, StateError, ValidationError)
from .flow import Diagnostic, Flow, Registry, Step, load_flow
from .ledger import Account, Ledger, format_id, new_id, parse_id
from .match import Matcher, Placement, detect_hardware, estimate_cost
from .pricing import Prices, estimate
from .runner import (Event, RunResult, StepResult, get_run, inputs_from_pairs, run,
                     runs)
from .vault import Vault, VaultEntry
from ._version import __version__

__all__ = [
    "__version__", "library_version", "library_path", "LibraryNotFound",
    "Error", "InvalidArgument", "NotFound", "ParseError", "ValidationError",
    "CycleError", "StateError", "ClosedError", "ExecError", "AlreadyExists",
    "AuthError", "InsufficientFunds", "PermissionDenied", "ConnectError",
    "ProtocolError",
    "Diagnostic", "Flow", "Registry", "Step", "load_flow",
    "run", "runs", "get_run", "inputs_from_pairs", "RunResult", "StepResult", "Event",
    "Matcher", "Placement", "estimate_cost", "detect_hardware",
    "Ledger", "Account", "new_id", "parse_id", "format_id",
    "Vault", "VaultEntry", "Prices", "estimate", "Client", "Job",
]
