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
import weakref
from ctypes import byref, c_long, c_uint64, c_void_p
from typing import Any, Dict, Iterator, Mapping, Optional, Union

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


def _diagnostics(reply: Optional[JSON]) -> list:
    """The "diagnostics" of a 422 reply as Diagnostic objects."""
    out = []
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
        return flow.to_json()               # credential values stripped
    if isinstance(flow, Mapping):
        return dict(flow)
    if isinstance(flow, bytes):
        return flow.decode("utf-8")
    if isinstance(flow, os.PathLike) or _looks_like_path(flow):
        path = os.fspath(flow)
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            raise errors.NotFound("%s: no such file" % path, code="RZ_ENOENT") from None
    return flow


class Client(Handle):
    """A connection to an orchestrator: one base URL and one API key.

    Methods block the calling thread for one HTTP exchange (timeout per
    request, default 30 s); errors raise rhizos.Error subclasses carrying the
    server's code: AuthError (401), PermissionDenied (403), NotFound (404),
    InsufficientFunds (402), StateError (409), ValidationError (422, with
    .diagnostics), ConnectError when the server cannot be reached,
    ProtocolError for a reply outside the API. One Client may be shared by
    threads (its calls take turns); each watch() runs on its own connection.
    """
    _free_fn, _what = "rz_client_free", "Client"

    def __init__(self, url: str, api_key: Optional[str] = None, *,
                 timeout: Optional[float] = 30.0) -> None:
        super().__init__()
        _require("rz_client_new", "rz_client_call")
        self.url = url
        self._key = enc(api_key)
        self._watches: "weakref.WeakSet[_Watch]" = weakref.WeakSet()
        errors.check(lib.rz_client_new(byref(self._h), enc(url), self._key), "client")
        try:
            self.set_timeout(timeout)
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
            err.http_status = status.value
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
        return reply["id"]

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
        return self.request("GET", "/api/v1/flows/%d/status" % _dep(deployment))

    def cancel(self, deployment: int) -> JSON:
        """Cancel a running deployment; returns its status. StateError once
        it has finished."""
        return self.request("DELETE", "/api/v1/flows/%d" % _dep(deployment))

    def flows(self) -> list:
        """This key's deployments: [{"id", "flow", "status"}]."""
        return (self.request("GET", "/api/v1/flows") or {}).get("flows", [])

    def balance(self) -> JSON:
        """This key's account: {"id", "kind", "balance_micros" (available),
        "pending_micros" (held), "credits_micros", "debits_micros"}."""
        return self.request("GET", "/api/v1/accounts/me")

    def withdraw(self, micros: int, address: Optional[str] = None) -> JSON:
        """Ask to withdraw `micros` (held until the treasury completes or
        fails it): {"withdrawal_id", "amount_micros", "status": "pending"}."""
        body: dict = {"amount_micros": micros}
        if address is not None:
            body["address"] = address
        return self.request("POST", "/api/v1/accounts/me/withdraw", body)

    def withdrawals(self) -> list:
        """This key's withdrawals, newest first: [{"id", "account",
        "amount_micros", "status" (pending, completed, failed, cancelled),
        "address"?, "tx"?, "reason"?}]."""
        return (self.request("GET", "/api/v1/accounts/me/withdrawals") or {}).get(
            "withdrawals", [])

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
            w = _Watch(self.url, self._key, path, int(round((idle_timeout or 0) * 1000)))
            self._watches.add(w)
        return w.iterate()

    def close(self) -> None:
        """Release the connection; running watch() iterators end with
        ClosedError."""
        with self._lock:
            for w in list(getattr(self, "_watches", ())):
                w.stop(closed=True)
            super().close()


def _dep(deployment: int) -> int:
    if isinstance(deployment, bool) or not isinstance(deployment, int) or deployment < 0:
        raise errors.InvalidArgument("a deployment id is a non-negative int",
                                     code="RZ_EINVAL")
    return deployment


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

    def __init__(self, url: str, key: Optional[bytes], path: str, idle_ms: int) -> None:
        self.url, self.key, self.path, self.idle_ms = url, key, path, idle_ms
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


__all__ = ["Client"]
