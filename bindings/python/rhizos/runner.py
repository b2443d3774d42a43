"""Embedded runs: execute a flow on this machine (rz_runner_run), optionally
recording it in a data folder's run store."""
from __future__ import annotations

import ctypes
import json
import os
import time
from ctypes import byref, c_char_p, c_int, c_void_p, cast
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from . import errors
from ._lib import (EVENT_CB, Handle, RzEvent, RzRunnerOpts, dec, enc, json_array,
                   json_object, lib, take_string)
from .flow import Flow

_EVENTS = {1: "step_started", 2: "step_succeeded", 3: "step_failed",
           4: "step_retrying", 5: "step_skipped", 6: "step_cancelled",
           7: "run_finished", 8: "notice", 10: "step_log", 11: "run_recorded"}
_NO_STEP = (1 << 64) - 1


@dataclass
class StepResult:
    """How one step ended: status ("succeeded", "failed", "skipped", ...),
    attempts made, its outputs and, if it failed or was skipped, why."""
    status: str
    attempts: int
    outputs: Dict[str, Any]
    error: Optional[str] = None


@dataclass
class RunResult:
    """A finished run: .status ("succeeded", "failed", "cancelled"), .steps
    by id, .outputs (the flow's declared `outputs:` by name; for a flow
    without them, those of each final step that succeeded, by step id)."""
    id: str
    flow: str
    status: str
    steps: Dict[str, StepResult]
    outputs: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class Event:
    """A progress event: kind ("step_started", ...), step id (None for run
    events), attempt (1-based), elapsed_ms since the run began, message."""
    kind: str
    step: Optional[str]
    attempt: int
    elapsed_ms: int
    message: Optional[str]


def _result(doc: Dict[str, Any]) -> RunResult:
    steps = {sid: StepResult(s.get("status", ""), int(s.get("attempts", 0)),
                             s.get("outputs") or {}, s.get("error"))
             for sid, s in (doc.get("steps") or {}).items()}
    return RunResult(doc.get("id", ""), doc.get("flow", ""), doc.get("status", ""),
                     steps, doc.get("outputs") or {}, doc)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class _Store(Handle):
    _free_fn, _what = "rz_store_close", "run store"

    def __init__(self, data_dir: str) -> None:
        super().__init__()
        errors.check(lib.rz_store_open(byref(self._h), enc(data_dir)), data_dir)


def run(flow: Flow, inputs: Optional[Mapping[str, Any]] = None,
        data_dir: Optional[str] = None, *, jobs: int = 0, sandbox: bool = True,
        run_id: Optional[str] = None, vault: Any = None,
        on_event: Optional[Callable[[Event], None]] = None,
        llm_servers: Optional[str] = None) -> RunResult:
    """Run `flow` to the end on this machine and return the result.

    The flow is validated first against the default registries unless
    flow.validate() already passed. `inputs` are the flow inputs; with
    `data_dir` the run is recorded in that folder's run store (as
    `rhizos flow run --data DIR` does, from its start). `vault` (an unlocked rhizos.Vault)
    supplies the steps' credentials. `on_event` is called on this thread
    for each progress event. `llm_servers` ("ollama=URL openai=URL ...")
    serves llm steps (docs/llm.md); None: $RHIZOS_LLM_SERVERS. A run whose
    steps fail is returned with status "failed"; an exception means it
    could not be carried out.
    """
    if not isinstance(flow, Flow):
        raise TypeError("run() wants a rhizos.Flow")
    if not flow.validated:
        diags = flow.validate()
        errs = [d for d in diags if d.severity == "error"]
        if errs or not flow.validated:
            raise errors.ValidationError(
                str(errs[0]) if errs else "flow not validated against a registry",
                code="RZ_EINVALID", diagnostics=diags)
    inputs_json = json.dumps(dict(inputs or {}))
    if jobs < 0 or jobs > 4096:
        raise errors.InvalidArgument("jobs must be 0..4096", code="RZ_EINVAL")
    opts = RzRunnerOpts()
    opts.version = RzRunnerOpts.VERSION
    opts.jobs = jobs
    opts.inputs_json = enc(inputs_json)
    opts.run_id = enc(run_id or "run-%d-%d" % (_wall_ms(), os.getpid()))
    opts.sandbox = 1 if sandbox else 0
    if llm_servers is not None:
        opts.llm_servers = enc(llm_servers)
    cancel = c_int(0)
    opts.cancel = cast(byref(cancel), type(opts.cancel))
    failure: List[BaseException] = []

    def event_cb(ev_p: "ctypes._Pointer[RzEvent]", _ud: Optional[int]) -> None:
        ev = ev_p.contents
        if failure or on_event is None:
            return
        try:
            step = None
            if ev.step != _NO_STEP:
                step = dec(lib.rz_flow_step_id(flow._h, ev.step))
            on_event(Event(_EVENTS.get(ev.kind, str(ev.kind)), step, ev.attempt,
                           ev.elapsed_ms, dec(ev.message) if ev.message else None))
        except BaseException as e:   # never unwind through C: cancel instead
            failure.append(e)
            cancel.value = 1

    cb = EVENT_CB(event_cb) if on_event else EVENT_CB(0)     # 0: a NULL callback
    opts.on_event = cb
    if vault is not None:
        vault._use().check()
    if data_dir is not None:
        opts.data_dir = enc(os.fspath(data_dir))
    run_h = c_void_p()
    vault_lock = vault._lock if vault is not None else None
    with flow._use() as fh:
        if vault_lock:
            vault_lock.acquire()
        try:
            if vault is not None:
                vault._use().check()
                opts.vault = vault._h.value
            rc = lib.rz_runner_run(byref(run_h), fh, byref(opts))
        finally:
            if vault_lock:
                vault_lock.release()
    try:
        if not run_h.value:
            raise errors.from_status(rc if rc < 0 else -26)
        if failure:
            raise failure[0]
        errors.check(rc, "recording the run")   # the run is there; its record not
        out = c_void_p()
        errors.check(lib.rz_run_to_json(run_h, byref(out)))
        return _result(json.loads(take_string(out)))
    finally:
        lib.rz_run_free(run_h)
        del cb


def inputs_from_pairs(pairs: Sequence[str]) -> Dict[str, Any]:
    """Flow inputs from "NAME=VALUE" texts, by the CLI's --input rule (the
    library's): VALUE as JSON if it parses, else a string; a later NAME
    wins. InvalidArgument-like Error for a pair without NAME= or a VALUE
    holding a NUL (\\u0000)."""
    arr = (c_char_p * max(len(pairs), 1))(*[enc(p) for p in pairs])
    out = c_void_p()
    errors.check(lib.rz_flow_inputs_parse(byref(out), arr, len(pairs)))
    return json_object(take_string(out))


def runs(data_dir: str, limit: int = 0) -> List[Dict[str, Any]]:
    """The runs recorded in `data_dir`, newest first: [{"id", "flow",
    "file", "status", "started_ms", "finished_ms", "steps"}] and
    "process_gone": True for a killed run; with `limit`,
    only the newest `limit` (only those records are read)."""
    if limit < 0:
        raise ValueError("limit must be >= 0")
    store = _Store(os.fspath(data_dir))
    try:
        out = c_void_p()
        errors.check(lib.rz_store_run_list_newest(store._h, limit, byref(out), None))
        return [dict(r) for r in json_array(take_string(out))]
    finally:
        store.close()


def get_run(data_dir: str, run_id: str) -> Dict[str, Any]:
    """One recorded run's full record (NotFound if unknown); "process_gone":
    True with "status": "running" for a run whose process is gone (killed),
    as runs() tells it."""
    store = _Store(os.fspath(data_dir))
    try:
        out = c_void_p()
        errors.check(lib.rz_store_run_get(store._h, enc(run_id), byref(out)), run_id)
        return json_object(take_string(out))
    finally:
        store.close()
