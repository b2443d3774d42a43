"""The orchestrator client: deploy flows, follow and cancel them, read the
account, over the C client (rz_client_*, docs/api.md).

    with rhizos.Client("http://127.0.0.1:8080", key) as c:
        dep = c.deploy("examples/flows/wordcount.yaml")
        for status in c.watch(dep):
            print(status["status"])
"""
from __future__ import annotations

import json
import os
import queue
import threading
import urllib.parse
import weakref
from ctypes import byref, c_long, c_uint64, c_void_p
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from . import errors
from ._lib import (CLIENT_EVENT_CB, Handle, dec, enc, lib, missing_client_calls,
                   take_string)
from .flow import Diagnostic, Flow, _looks_like_path, load_flow
from .vault import Vault

JSON = Dict[str, Any]
FlowSource = Union[Flow, str, bytes, "os.PathLike[str]", Mapping[str, Any]]

_FINISHED = ("succeeded", "failed", "cancelled")


def _require(*names: str) -> None:
    gone = [n for n in names if n in missing_client_calls]
    if gone:
        raise errors.Error("this librhizos has no orchestrator client (%s missing)"
                           % ", ".join(gone), code="RZ_EUNSUPPORTED", status=-24)


def _diagnostics(reply: Optional[JSON]) -> List[Diagnostic]:
    """The "diagnostics" of a 422 reply as Diagnostic objects."""
    out: List[Diagnostic] = []
    for d in (reply or {}).get("diagnostics") or []:
        if isinstance(d, dict):
            out.append(Diagnostic(str(d.get("file", "")), int(d.get("line") or 0),
                                  int(d.get("column") or 0), str(d.get("code", "")),
                                  str(d.get("message", "")),
                                  str(d.get("severity", "error"))))
    return out


def _flow_text(flow: FlowSource) -> Union[str, JSON]:
    """What POST /api/v1/flows/deploy takes as "flow": document text, or a
    builder JSON object."""
    if isinstance(flow, Flow):
        flow._expanded()                    # sub-flows read here, as the CLI does
        return flow.to_json()               # credential values stripped
    if isinstance(flow, Mapping):
        return dict(flow)
    if isinstance(flow, bytes):
        return flow.decode("utf-8")
    if isinstance(flow, os.PathLike) or _looks_like_path(flow):
        path = os.fspath(flow)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise errors.NotFound("%s: no such file" % path, code="RZ_ENOENT") from None
        if "flow:" not in text and '"flow"' not in text:
            return text
        # a sub-flow file is read beside this one: the server never reads it
        with load_flow(path) as parsed:
            if not parsed.has_subflows:
                return text
            parsed._expanded()
            return parsed.to_json()
    return flow


def _object(reply: Any, what: str) -> JSON:
    """A reply that must be a JSON object; anything else is outside the API."""
    if not isinstance(reply, dict):
        raise errors.ProtocolError("%s: the reply is not a JSON object" % what,
                                   code="RZ_EPROTOCOL")
    return reply


def _list(reply: Any, key: str, what: str) -> List[JSON]:
    """reply[key], a list of JSON objects ({"flows": [...]} and the like)."""
    items = _object(reply, what).get(key)
    if not isinstance(items, list):
        raise errors.ProtocolError("%s: the reply has no %r list" % (what, key),
                                   code="RZ_EPROTOCOL")
    return [_object(item, what) for item in items]


def _field(doc: JSON, key: str, kind: type, optional: bool = False) -> Any:
    """doc[key] checked against `kind` (bool never passes as int); a job
    reply missing a field or holding another type is a ProtocolError."""
    value = doc.get(key)
    if value is None and optional:
        return None
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise errors.ProtocolError("job reply: %r is %r, not %s%s" % (
        key, value, kind.__name__, " or null" if optional else ""), code="RZ_EPROTOCOL")


JOB_FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Job:
    """A standalone job as GET /api/v1/jobs/{id} shows it (docs/api.md).

    status: pending, queued, assigned, running, succeeded, failed or
    cancelled; node: None until placed; outputs/error: None until it ends;
    module is "" for an ad-hoc image (then image and command are set).
    Fields the API adds later stay readable in .raw.
    """
    id: int
    status: str
    attempt: int
    module: str
    version: str
    priority: int
    max_cost_micros: int
    cost_micros: int
    run_ms: int
    node: Optional[int] = None
    deployment: Optional[int] = None
    step: Optional[str] = None
    outputs: Optional[Dict[str, Any]] = None
    error: Optional[str] = None
    waiting_reason: Optional[str] = None
    image: Optional[str] = None
    command: Optional[List[str]] = None
    log: Optional[str] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def finished(self) -> bool:
        """True once succeeded, failed or cancelled."""
        return self.status in JOB_FINISHED

    @classmethod
    def from_json(cls, doc: Any) -> "Job":
        """A Job from the API's job object; ProtocolError when it is not one."""
        d = _object(doc, "job")
        command = _field(d, "command", list, optional=True)
        return cls(
            id=_field(d, "id", int), status=_field(d, "status", str),
            attempt=_field(d, "attempt", int), module=_field(d, "module", str),
            version=_field(d, "version", str), priority=_field(d, "priority", int),
            max_cost_micros=_field(d, "max_cost_micros", int),
            cost_micros=_field(d, "cost_micros", int), run_ms=_field(d, "run_ms", int),
            node=_field(d, "node", int, optional=True),
            deployment=_field(d, "deployment", int, optional=True),
            step=_field(d, "step", str, optional=True),
            outputs=_field(d, "outputs", dict, optional=True),
            error=_field(d, "error", str, optional=True),
            waiting_reason=_field(d, "waiting_reason", str, optional=True),
            image=_field(d, "image", str, optional=True),
            command=None if command is None else [str(a) for a in command],
            log=_field(d, "log", str, optional=True),
            raw=dict(d))


class Client(Handle):
    """A connection to an orchestrator: one base URL and one API key.

    Methods block the calling thread for one HTTP exchange (timeout per
    request, default 30 s); errors raise rhizos.Error subclasses carrying the
    server's code: AuthError (401), PermissionDenied (403), NotFound (404),
    InsufficientFunds (402), StateError (409), ValidationError (422, with
    .diagnostics), ConnectError when the server cannot be reached,
    ProtocolError for a reply outside the API. One Client may be shared by
    threads (its calls take turns); each watch() runs on its own connection.
    `ca_file`: a PEM file of CA certificates to verify an https server with
    (a private CA or a self-signed certificate), instead of the system's;
    the server's certificate and name are verified either way.
    """
    _free_fn, _what = "rz_client_free", "Client"

    def __init__(self, url: str, api_key: Optional[str] = None, *,
                 timeout: Optional[float] = 30.0,
                 ca_file: Optional[Union[str, "os.PathLike[str]"]] = None) -> None:
        super().__init__()
        _require("rz_client_new", "rz_client_call")
        if ca_file is not None:
            _require("rz_client_set_ca_file")
        self.url = url
        self._key = enc(api_key)
        self._ca = enc(os.fspath(ca_file)) if ca_file is not None else None
        self._watches: "weakref.WeakSet[_Watch]" = weakref.WeakSet()
        errors.check(lib.rz_client_new(byref(self._h), enc(url), self._key), "client")
        try:
            self.set_timeout(timeout)
            if self._ca is not None:
                with self._use() as h:
                    errors.check(lib.rz_client_set_ca_file(h, self._ca), "ca_file")
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:                     # never the key
        return "<rhizos.Client %s%s>" % (self.url, " (closed)" if self.closed else "")

    def set_timeout(self, seconds: Optional[float]) -> None:
        """Limit each request to `seconds` (None or 0: no limit)."""
        ms = int(round((seconds or 0) * 1000))
        if ms < 0:
            raise errors.InvalidArgument("timeout must be >= 0", code="RZ_EINVAL")
        with self._use() as h:
            errors.check(lib.rz_client_set_timeout(h, ms))

    def set_key(self, api_key: Optional[str]) -> None:
        """Use another API key from now on."""
        key = enc(api_key)
        with self._use() as h:
            errors.check(lib.rz_client_set_key(h, key))
            self._key = key

    # -- requests ---------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One API call: `body` (dict/list, or JSON text) is sent as JSON;
        returns the parsed reply, None when empty. An error status raises,
        with the reply's diagnostics on a 422."""
        text = None if body is None else (body if isinstance(body, str) else json.dumps(body))
        m, p, b = enc(method), enc(path), enc(text)
        status, out = c_long(), c_void_p()
        with self._use() as h:
            rc = lib.rz_client_call(h, m, p, b, 0, byref(status), byref(out))
            reply = take_string(out)
            if rc < 0:
                err = errors.from_status(rc)
        if rc < 0:
            try:
                doc = json.loads(reply) if reply else None
            except ValueError:
                doc = None
            err.diagnostics = _diagnostics(doc if isinstance(doc, dict) else None)
            err.http_status = int(status.value)
            raise err
        return json.loads(reply) if reply else None

    def deploy(self, flow: FlowSource, inputs: Optional[Mapping[str, Any]] = None,
               credentials: Optional[Mapping[str, str]] = None, *,
               vault: Optional["Vault"] = None) -> int:
        """Deploy a flow (a Flow, a path, YAML/JSON text, or a builder dict)
        and return the deployment id. With `vault`, the credentials the flow
        references are sealed to this orchestrator's key, as `rhizos flow
        deploy` does (`credentials` gives boxes sealed already instead). An
        invalid flow raises ValidationError with the server's .diagnostics;
        too little money InsufficientFunds."""
        self._use().check()
        if vault is not None and credentials is not None:
            raise errors.InvalidArgument("give credentials or vault, not both",
                                         code="RZ_EINVAL")
        body: JSON = {"flow": _flow_text(flow)}
        if inputs is not None:
            body["inputs"] = dict(inputs)
        if vault is not None:
            credentials = self._sealed(flow, body["flow"], vault)
        if credentials is not None:
            body["credentials"] = dict(credentials)
        reply = self.request("POST", "/api/v1/flows/deploy", body)
        if not isinstance(reply, dict) or not isinstance(reply.get("id"), int):
            raise errors.ProtocolError("deploy reply has no id", code="RZ_EPROTOCOL")
        return int(reply["id"])

    def _sealed(self, flow: FlowSource, text: Union[str, JSON],
                vault: "Vault") -> Optional[Dict[str, str]]:
        """The flow's credentials sealed to this orchestrator; None when it
        references none (then neither the key nor the vault is used)."""
        loaded = flow if isinstance(flow, Flow) else load_flow(
            json.dumps(text) if isinstance(text, dict) else text)
        try:
            with loaded._use() as h:
                if lib.rz_vault_flow_references(h) == 0:
                    return None
            keys = self.request("GET", "/api/v1/keys")
            key = keys.get("x25519_public_key") if isinstance(keys, dict) else None
            if not isinstance(key, str) or len(key) != 64:
                raise errors.ProtocolError("the orchestrator's /api/v1/keys reply has "
                                           "no usable key", code="RZ_EPROTOCOL")
            return vault.seal_flow(loaded, key)
        finally:
            if loaded is not flow:
                loaded.close()

    def status(self, deployment: int) -> JSON:
        """{"id", "flow", "status", "steps": {id: {"status", "attempts",
        "outputs", "error"?, "job"}}, "outputs", "held_micros", "charged_micros"}"""
        return _object(self.request("GET", "/api/v1/flows/%d/status" % _dep(deployment)),
                       "flow status")

    def cancel(self, deployment: int) -> JSON:
        """Cancel a running deployment; returns its status. StateError once
        it has finished."""
        return _object(self.request("DELETE", "/api/v1/flows/%d" % _dep(deployment)),
                       "flow cancel")

    def pause(self, deployment: int) -> JSON:
        """Pause a running deployment: no step starts until resume()
        (started ones finish, holds stay); returns its status, with
        "paused": True. StateError once it has finished."""
        return _object(self.request("POST", "/api/v1/flows/%d/pause" % _dep(deployment)),
                       "flow pause")

    def resume(self, deployment: int) -> JSON:
        """Resume a paused deployment; returns its status."""
        return _object(self.request("POST", "/api/v1/flows/%d/resume" % _dep(deployment)),
                       "flow resume")

    def approve(self, deployment: int, step: str, comment: Optional[str] = None,
                *, reject: bool = False) -> JSON:
        """Decide an approval step listed in the status's
        "awaiting_approval" (reject=True rejects it); returns the status.
        StateError when the step is not awaiting a decision."""
        if not isinstance(step, str) or not step:
            raise TypeError("step must be a step id")
        body = {} if comment is None else {"comment": comment}
        path = "/api/v1/flows/%d/steps/%s/%s" % (_dep(deployment), urllib.parse.quote(step, safe=""),
                                                "reject" if reject else "approve")
        return _object(self.request("POST", path, body), "flow approve")

    def reject(self, deployment: int, step: str, comment: Optional[str] = None) -> JSON:
        """Reject an approval step: it fails and the steps after it are
        skipped; returns the status."""
        return self.approve(deployment, step, comment, reject=True)

    def clear_cache(self, flow: Optional[str] = None, step: Optional[str] = None) -> JSON:
        """Clear this account's step cache: results taken until now (of
        named flow `flow`, of step `step`; None: all) are never reused by a
        later resume. Another account's cache is never touched. Returns
        {"flow", "step", "cleared_before_ms"}."""
        query = urllib.parse.urlencode([(k, v) for k, v in (("flow", flow), ("step", step))
                                        if v is not None])
        return _object(self.request("DELETE", "/api/v1/cache" + ("?" + query if query else "")),
                       "cache clear")

    def flows(self) -> List[JSON]:
        """This key's deployments: [{"id", "flow", "status"}]."""
        return _list(self.request("GET", "/api/v1/flows"), "flows", "flow list")

    def balance(self) -> JSON:
        """This key's account: {"id", "kind", "balance_micros" (available),
        "pending_micros" (held), "credits_micros", "debits_micros"}."""
        return _object(self.request("GET", "/api/v1/accounts/me"), "account")

    def withdraw(self, micros: int, address: Optional[str] = None) -> JSON:
        """Ask to withdraw `micros` (held until the treasury completes or
        fails it): {"withdrawal_id", "amount_micros", "status": "pending"}."""
        body: JSON = {"amount_micros": micros}
        if address is not None:
            body["address"] = address
        return _object(self.request("POST", "/api/v1/accounts/me/withdraw", body),
                       "withdraw")

    def withdrawals(self) -> List[JSON]:
        """This key's withdrawals, newest first: [{"id", "account",
        "amount_micros", "status" (pending, completed, failed, cancelled),
        "address"?, "tx"?, "reason"?}]."""
        return _list(self.request("GET", "/api/v1/accounts/me/withdrawals"),
                     "withdrawals", "withdrawals")

    # -- standalone jobs (POST/GET/DELETE /api/v1/jobs) ---------------------
    def submit_job(self, module: Optional[str] = None,
                   inputs: Optional[Mapping[str, Any]] = None, *,
                   image: Optional[str] = None, command: Optional[Sequence[str]] = None,
                   config: Optional[Mapping[str, Any]] = None,
                   requirements: Optional[Mapping[str, Any]] = None,
                   max_cost_micros: Optional[int] = None, priority: Optional[int] = None,
                   queue_timeout_s: Optional[int] = None,
                   replicas: Optional[int] = None) -> Job:
        """Submit one job: a module ("id" or "id@version") or an ad-hoc
        `image` (with `command`, else the image's own). Returns it as
        queued; InsufficientFunds when the account cannot hold its maximum
        cost, ValidationError for inputs the module refuses."""
        if (module is None) == (image is None):
            raise errors.InvalidArgument("give a module or an image, not both",
                                         code="RZ_EINVAL")
        if command is not None and image is None:
            raise errors.InvalidArgument("command goes with image", code="RZ_EINVAL")
        body: JSON = {"module": module} if module is not None else {"image": image}
        optional: Dict[str, Any] = {
            "inputs": None if inputs is None else dict(inputs),
            "command": None if command is None else list(command),
            "config": None if config is None else dict(config),
            "requirements": None if requirements is None else dict(requirements),
            "max_cost_micros": max_cost_micros, "priority": priority,
            "queue_timeout_s": queue_timeout_s,
            "verify": None if replicas is None else {"replicas": replicas}}
        body.update((k, v) for k, v in optional.items() if v is not None)
        return Job.from_json(self.request("POST", "/api/v1/jobs", body))

    def get_job(self, job: int) -> Job:
        """One job of this key (NotFound for another's or an unknown id)."""
        return Job.from_json(self.request("GET", "/api/v1/jobs/%d" % _id(job, "job")))

    def cancel_job(self, job: int) -> Job:
        """Cancel a job that has not finished and return it; StateError
        once it has."""
        return Job.from_json(self.request("DELETE", "/api/v1/jobs/%d" % _id(job, "job")))

    def list_jobs(self, limit: Optional[int] = None) -> List[Job]:
        """This key's jobs, newest first (the server's default: 100)."""
        path = "/api/v1/jobs"
        if limit is not None:
            path += "?limit=%d" % _id(limit, "limit")
        return [Job.from_json(j) for j in _list(self.request("GET", path), "jobs", "job list")]

    def watch(self, deployment: int, *, idle_timeout: Optional[float] = None
              ) -> Iterator[JSON]:
        """Follow a deployment: yields its status dict at once and on every
        change, the last one when it finished (then the iterator ends).

        The events arrive on a thread of their own with its own connection.
        Stopping early (break, or .close() on the iterator) returns at once;
        that connection ends at the server's next event. `idle_timeout`
        (seconds) drops a connection that stays silent that long
        (ConnectError); None waits as long as the deployment runs.
        """
        _require("rz_client_events")
        path = "/api/v1/flows/%d/events" % _dep(deployment)
        with self._lock:
            self._use().check()
            w = _Watch(self.url, self._key, path, int(round((idle_timeout or 0) * 1000)),
                       self._ca)
            self._watches.add(w)
        return w.iterate()

    def close(self) -> None:
        """Release the connection; running watch() iterators end with
        ClosedError."""
        with self._lock:
            for w in list(getattr(self, "_watches", ())):
                w.stop(closed=True)
            super().close()


def _id(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise errors.InvalidArgument("a %s is a non-negative int" % what,
                                     code="RZ_EINVAL")
    return value


def _dep(deployment: int) -> int:
    return _id(deployment, "deployment id")


class _End:
    """Queue item: the stream ended (error: the exception to raise)."""

    def __init__(self, error: Optional[BaseException] = None,
                 from_thread: bool = True) -> None:
        self.error = error
        self.from_thread = from_thread     # False: put by Client.close()


class _Watch:
    """One server-sent event stream read by rz_client_events on a thread,
    with its own rz_client (the C client is one-thread-at-a-time). The
    callback hands each event to a queue and asks C to stop once the
    consumer has gone."""

    def __init__(self, url: str, key: Optional[bytes], path: str, idle_ms: int,
                 ca: Optional[bytes] = None) -> None:
        self.url, self.key, self.path, self.idle_ms = url, key, path, idle_ms
        self.ca = ca
        self.q: "queue.Queue[Any]" = queue.Queue()
        self.stopping = threading.Event()
        self.thread: Optional[threading.Thread] = None

    def stop(self, closed: bool = False) -> None:
        self.stopping.set()
        if closed:
            self.q.put(_End(errors.ClosedError("Client is closed"), from_thread=False))

    def _on_event(self, ud: Any, name: Optional[bytes], data: Optional[bytes]) -> int:
        if self.stopping.is_set():
            return 1
        try:
            doc = json.loads(dec(data)) if data else None
        except ValueError:
            self.q.put(_End(errors.ProtocolError("event data is not JSON",
                                                 code="RZ_EPROTOCOL")))
            return 1
        self.q.put((dec(name), doc))
        return 1 if name == b"end" else 0     # the last event: done reading

    def _run(self) -> None:
        h = c_void_p()
        end: _End
        cb = CLIENT_EVENT_CB(self._on_event)
        try:
            rc = lib.rz_client_new(byref(h), enc(self.url), self.key)
            if rc == 0:
                rc = lib.rz_client_set_timeout(h, 0)
            if rc == 0 and self.ca is not None:
                rc = lib.rz_client_set_ca_file(h, self.ca)
            if rc == 0:
                rc = lib.rz_client_events(h, enc(self.path), self.idle_ms, cb, None)
            end = _End(errors.from_status(rc) if rc < 0 else None)
        except BaseException as e:        # never let the thread die silently
            end = _End(e)
        finally:
            lib.rz_client_free(h)         # out of libcurl before the end is told
        self.q.put(end)

    def iterate(self) -> Iterator[JSON]:
        self.thread = threading.Thread(target=self._run, name="rhizos-watch", daemon=True)
        self.thread.start()
        try:
            while True:
                item = self.q.get()
                if isinstance(item, _End):
                    if item.from_thread:
                        self._join()
                    if item.error is not None:
                        raise item.error
                    return
                name, doc = item
                if doc is not None:
                    yield doc
                if name == "end":
                    self._join()
                    return
        finally:
            self.stop()

    def _join(self) -> None:
        """At the stream's end the thread has only its connection left to
        free: wait for that, so the program never exits with the thread
        still inside the library. (An early stop does not wait.)"""
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join()


__all__ = ["Client", "Job"]
