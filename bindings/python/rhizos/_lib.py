"""Loading librhizos and declaring the C prototypes (ctypes).

The library is looked up, in order, at $RHIZOS_LIBRARY (or $RHIZOS_LIB, its
older name), next to this package, in the build tree of the checkout this
package sits in (bindings/python/ -> build*/lib/), in the libdir `meson
install` recorded, and finally through the system loader. Every prototype is
declared once here so that a wrong argument type is a TypeError in Python,
never a crash in C.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib
import json
import os
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p,
                    c_int, c_long, c_size_t, c_uint, c_uint32, c_uint64,
                    c_void_p)
from typing import (Any, ClassVar, Dict, List, Optional, Tuple, TypeVar, Union,
                    overload)

_HERE = os.path.dirname(os.path.abspath(__file__))
_SONAMES = ("librhizos.so", "librhizos.so.0")


class LibraryNotFound(ImportError):
    """librhizos.so could not be located or loaded."""


# ---- structures mirrored from include/rhizos/*.h ---------------------------

class RzError(Structure):
    _fields_ = [("code", c_int), ("message", c_char * 512), ("file", c_char * 256),
                ("line", c_uint32), ("column", c_uint32), ("pointer", c_char * 256)]


class RzDiag(Structure):
    _fields_ = [("file", c_char_p), ("line", c_uint32), ("column", c_uint32),
                ("code", c_int), ("severity", c_int), ("message", c_char_p),
                ("pointer", c_char_p)]


class RzEvent(Structure):
    _fields_ = [("kind", c_int), ("run", c_void_p), ("step", c_size_t),
                ("attempt", c_uint32), ("elapsed_ms", c_uint64),
                ("message", c_char_p)]


EVENT_CB = CFUNCTYPE(None, POINTER(RzEvent), c_void_p)
STEP_ENV_CB = CFUNCTYPE(c_int, c_size_t, c_void_p, c_void_p)
STEP_ENV_FREE_CB = CFUNCTYPE(None, c_void_p, c_void_p)


class RzRunnerOpts(Structure):
    _fields_ = [("version", c_int), ("jobs", c_uint), ("inputs_json", c_char_p),
                ("run_id", c_char_p), ("env", c_void_p), ("sandbox", c_int),
                ("on_event", EVENT_CB), ("userdata", c_void_p),
                ("cancel", POINTER(c_int)), ("step_env", STEP_ENV_CB),
                ("step_env_free", c_void_p), ("vault", c_void_p),
                ("data_dir", c_char_p), ("container_host", c_char_p),
                ("default_memory_mb", c_uint32), ("max_scratch_mb", c_uint32),
                ("prices", c_void_p), ("reuse_json", c_char_p),
                ("llm_servers", c_char_p), ("store", c_void_p),
                ("max_file_mb", c_uint32), ("max_run_files_mb", c_uint32)]
    VERSION = 10  # RZ_RUNNER_OPTS_VERSION; prices NULL: not priced;
    #               reuse_json NULL: none; llm_servers NULL: $RHIZOS_LLM_SERVERS;
    #               store NULL: data_dir's; max_file_mb, max_run_files_mb 0:
    #               the defaults


class RzFlowExpandOpts(Structure):
    _fields_ = [("version", c_int), ("no_files", c_int), ("keep_named", c_int),
                ("flows_dir", c_char_p), ("named", c_void_p), ("named_ctx", c_void_p)]
    VERSION = 1   # RZ_FLOW_EXPAND_OPTS_VERSION


class RzPlacement(Structure):
    _fields_ = [("node", c_size_t), ("node_id", c_char_p),
                ("cost_micros", c_uint64), ("ticket", c_uint64)]


class RzNodeUsage(Structure):
    _fields_ = [("cores_used", c_uint32), ("cores_total", c_uint32),
                ("memory_used_mb", c_uint64), ("memory_total_mb", c_uint64),
                ("storage_used_gb", c_uint64), ("storage_total_gb", c_uint64),
                ("gpus_used", c_uint32), ("gpus_total", c_uint32),
                ("jobs", c_uint32)]


class RzMatcherStats(Structure):
    _fields_ = [("placements", c_uint64), ("failures", c_uint64),
                ("releases", c_uint64), ("cache_hits", c_uint64),
                ("cache_builds", c_uint64), ("groups", c_size_t)]


class RzHwOpts(Structure):
    _fields_ = [("version", c_int), ("data_dir", c_char_p), ("sysfs_root", c_char_p),
                ("nvml_path", c_char_p), ("skip_gpus", c_int),
                ("skip_runtimes", c_int), ("light_topology", c_int)]


class RzLedgerId(Structure):
    _fields_ = [("hi", c_uint64), ("lo", c_uint64)]


class RzLedgerAccount(Structure):
    _fields_ = [("id", RzLedgerId), ("kind", c_uint32), ("flags", c_uint32),
                ("debits_posted", c_uint64), ("debits_pending", c_uint64),
                ("credits_posted", c_uint64), ("credits_pending", c_uint64),
                ("created_seq", c_uint64)]


class RzLedgerResult(Structure):
    _fields_ = [("status", c_int), ("replayed", c_uint32),
                ("amount", c_uint64), ("fee", c_uint64),
                ("expired", c_uint64)]


class RzLedgerOpts(Structure):
    _fields_ = [("version", c_int), ("fee_bps", c_uint32), ("read_only", c_int),
                ("durable", c_int), ("map_size", c_uint64),
                ("journal_size", c_uint64), ("checkpoint_ops", c_uint64)]


class RzLedgerStats(Structure):
    _fields_ = [(n, c_uint64) for n in (
        "accounts", "transfers", "escrow_held_micros", "escrow_micros",
        "fees_micros", "deposited_micros", "withdrawn_micros", "open_pending",
        "batches")]


class RzVaultOpts(Structure):
    _fields_ = [("version", c_uint), ("kdf", c_int), ("opslimit", c_uint64),
                ("memlimit", c_uint64), ("max_opslimit", c_uint64),
                ("max_memlimit", c_uint64)]


class RzVaultEntry(Structure):
    _fields_ = [("id", c_char_p), ("name", c_char_p), ("type", c_char_p),
                ("created_ms", c_uint64), ("updated_ms", c_uint64),
                ("metadata", c_char_p), ("value_len", c_size_t)]


# ---- prototypes ------------------------------------------------------------

_P = c_void_p
_PP = POINTER(c_void_p)
_STR_OUT = POINTER(c_void_p)      # char **: read with ctypes.string_at, rz_free
_SIZE_OUT = POINTER(c_size_t)

_PROTOS = {
    # common
    "rz_strerror": (c_char_p, [c_int]),
    "rz_status_name": (c_char_p, [c_int]),
    "rz_error_last": (POINTER(RzError), []),
    "rz_error_clear": (None, []),
    "rz_free": (None, [c_void_p]),
    "rz_version": (c_char_p, []),
    "rz_diags_new": (c_int, [_PP]),
    "rz_diags_free": (None, [_P]),
    "rz_diags_count": (c_size_t, [_P]),
    "rz_diags_get": (POINTER(RzDiag), [_P, c_size_t]),
    "rz_diags_sort": (None, [_P]),
    # flow
    "rz_flow_parse": (c_int, [_PP, c_char_p, c_size_t, c_int, c_char_p, _P]),
    "rz_flow_load": (c_int, [_PP, c_char_p, c_int, _P]),
    "rz_flow_free": (None, [_P]),
    "rz_flow_validate": (c_int, [_P, _P, _P]),
    "rz_flow_expand_with": (c_int, [_PP, _P, _P, _P]),
    "rz_flow_step_subflow": (c_char_p, [_P, c_size_t]),
    "rz_flow_name": (c_char_p, [_P]),
    "rz_flow_file": (c_char_p, [_P]),
    "rz_flow_format": (c_int, [_P]),
    "rz_flow_step_count": (c_size_t, [_P]),
    "rz_flow_step_id": (c_char_p, [_P, c_size_t]),
    "rz_flow_step_module": (c_char_p, [_P, c_size_t]),
    "rz_flow_to_json": (c_int, [_P, c_uint, _STR_OUT, _SIZE_OUT]),
    "rz_flow_to_yaml": (c_int, [_P, _STR_OUT, _SIZE_OUT]),
    "rz_flow_to_cbor": (c_int, [_P, _STR_OUT, _SIZE_OUT]),
    "rz_flow_inputs_parse": (c_int, [_STR_OUT, POINTER(c_char_p), c_size_t]),
    # registry
    "rz_registry_new": (c_int, [_PP]),
    "rz_registry_free": (None, [_P]),
    "rz_registry_add": (c_int, [_P, c_char_p, _P]),
    "rz_registry_add_path_list": (c_int, [_P, c_char_p, _P]),
    "rz_registry_trust": (c_int, [_P, c_char_p]),
    "rz_registry_count": (c_size_t, [_P]),
    "rz_registry_get": (c_void_p, [_P, c_size_t]),
    "rz_module_id": (c_char_p, [_P]),
    "rz_module_version": (c_char_p, [_P]),
    # plan
    "rz_plan_build": (c_int, [_PP, _P, _P]),
    "rz_plan_free": (None, [_P]),
    "rz_plan_to_json": (c_int, [_P, _STR_OUT]),
    # run
    "rz_runner_run": (c_int, [_PP, _P, POINTER(RzRunnerOpts)]),
    "rz_run_free": (None, [_P]),
    "rz_run_to_json": (c_int, [_P, _STR_OUT]),
    "rz_run_state_get": (c_int, [_P]),
    "rz_run_flow": (c_void_p, [_P]),
    "rz_store_open": (c_int, [_PP, c_char_p]),
    "rz_store_close": (None, [_P]),
    "rz_store_run_put": (c_int, [_P, _P, c_uint64, c_uint64]),
    "rz_store_run_list": (c_int, [_P, _STR_OUT]),
    "rz_store_run_list_newest": (c_int, [_P, c_size_t, _STR_OUT, _SIZE_OUT]),
    "rz_store_run_get": (c_int, [_P, c_char_p, _STR_OUT]),
    # hw + match
    "rz_caps_parse": (c_int, [_PP, c_char_p, c_size_t]),
    "rz_caps_free": (None, [_P]),
    "rz_caps_to_json": (c_int, [_P, c_int, _STR_OUT]),
    "rz_hw_detect": (c_int, [_PP, POINTER(RzHwOpts)]),
    "rz_reqs_parse": (c_int, [_PP, c_char_p, c_size_t]),
    "rz_reqs_free": (None, [_P]),
    "rz_policy_parse": (c_int, [c_char_p, POINTER(c_int)]),
    "rz_matcher_new": (c_int, [_PP, c_int]),
    "rz_matcher_free": (None, [_P]),
    "rz_matcher_add": (c_int, [_P, _P, _SIZE_OUT]),
    "rz_matcher_remove": (c_int, [_P, c_char_p]),
    "rz_matcher_count": (c_size_t, [_P]),
    "rz_matcher_node_id": (c_char_p, [_P, c_size_t]),
    "rz_matcher_place": (c_int, [_P, _P, POINTER(RzPlacement)]),
    "rz_matcher_release": (c_int, [_P, c_uint64]),
    "rz_matcher_explain": (c_int, [_P, _P, _STR_OUT]),
    "rz_matcher_usage": (c_int, [_P, c_size_t, POINTER(RzNodeUsage)]),
    "rz_matcher_stats_get": (None, [_P, POINTER(RzMatcherStats)]),
    "rz_match_cost": (c_uint64, [_P, _P]),
    # ledger
    "rz_ledger_open": (c_int, [_PP, c_char_p, POINTER(RzLedgerOpts)]),
    "rz_ledger_close": (None, [_P]),
    "rz_ledger_checkpoint": (c_int, [_P]),
    "rz_ledger_create_account": (c_int, [_P, RzLedgerId, c_int]),
    "rz_ledger_deposit_request": (c_int, [_P, RzLedgerId, RzLedgerId, c_uint64]),
    "rz_ledger_deposit_confirm": (c_int, [_P, RzLedgerId, RzLedgerId]),
    "rz_ledger_test_credit": (c_int, [_P, RzLedgerId, RzLedgerId, c_uint64]),
    "rz_ledger_hold": (c_int, [_P, RzLedgerId, RzLedgerId, RzLedgerId,
                               c_uint64, c_uint64]),
    "rz_ledger_settle": (c_int, [_P, RzLedgerId, RzLedgerId, RzLedgerId,
                                 c_uint64, POINTER(RzLedgerResult)]),
    "rz_ledger_refund": (c_int, [_P, RzLedgerId, RzLedgerId,
                                 POINTER(RzLedgerResult)]),
    "rz_ledger_withdraw_request": (c_int, [_P, RzLedgerId, RzLedgerId, c_uint64]),
    "rz_ledger_withdraw_complete": (c_int, [_P, RzLedgerId, RzLedgerId]),
    "rz_ledger_withdraw_cancel": (c_int, [_P, RzLedgerId, RzLedgerId]),
    "rz_ledger_tick": (c_int, [_P, c_uint64, POINTER(c_uint64)]),
    "rz_ledger_balance": (c_int, [_P, RzLedgerId, POINTER(RzLedgerAccount)]),
    "rz_ledger_available": (c_uint64, [POINTER(RzLedgerAccount)]),
    "rz_ledger_stats_get": (c_int, [_P, POINTER(RzLedgerStats)]),
    "rz_ledger_verify": (c_int, [_P]),
    "rz_ledger_export": (c_int, [_P, c_int, _STR_OUT]),
    "rz_ledger_fee": (c_uint64, [c_uint64, c_uint32]),
    # vault
    "rz_vault_create": (c_int, [_PP, c_char_p, c_char_p, c_size_t,
                                POINTER(RzVaultOpts)]),
    "rz_vault_open": (c_int, [_PP, c_char_p, POINTER(RzVaultOpts)]),
    "rz_vault_unlock": (c_int, [_P, c_char_p, c_size_t]),
    "rz_vault_lock": (None, [_P]),
    "rz_vault_is_unlocked": (c_int, [_P]),
    "rz_vault_save": (c_int, [_P]),
    "rz_vault_passwd": (c_int, [_P, c_char_p, c_size_t, POINTER(RzVaultOpts)]),
    "rz_vault_close": (None, [_P]),
    "rz_vault_count": (c_size_t, [_P]),
    "rz_vault_get": (c_int, [_P, c_size_t, POINTER(RzVaultEntry)]),
    "rz_vault_find": (c_size_t, [_P, c_char_p]),
    "rz_vault_add": (c_int, [_P, c_char_p, c_char_p, c_char_p, c_char_p,
                             c_size_t, c_char_p]),
    "rz_vault_update": (c_int, [_P, c_char_p, c_char_p, c_char_p, c_size_t]),
    "rz_vault_remove": (c_int, [_P, c_char_p]),
    "rz_vault_reveal": (c_int, [_P, c_size_t, _PP]),
    "rz_secret_data": (c_void_p, [_P]),
    "rz_secret_len": (c_size_t, [_P]),
    "rz_secret_free": (None, [_P]),
    "rz_vault_resolve_step": (c_int, [_P, _P, c_size_t, c_void_p]),
    "rz_vault_flow_references": (c_size_t, [_P]),
    "rz_vault_seal_flow": (c_int, [_STR_OUT, _P, _P, c_char_p, c_uint64]),
    "rz_vault_env_free": (None, [c_void_p]),
    # estimate
    "rz_prices_new": (c_int, [_PP]),
    "rz_prices_free": (None, [_P]),
    "rz_prices_add_json": (c_int, [_P, c_char_p, c_size_t, c_char_p]),
    "rz_prices_add_file": (c_int, [_P, c_char_p]),
    "rz_prices_node_count": (c_size_t, [_P]),
    "rz_prices_provider_count": (c_size_t, [_P]),
    "rz_estimate_flow": (c_int, [_PP, _P, _P]),
    "rz_estimate_free": (None, [_P]),
    "rz_estimate_to_json": (c_int, [_P, _STR_OUT]),
}

# rz_client_events' callback: (userdata, event name, data JSON) -> stop
CLIENT_EVENT_CB = CFUNCTYPE(c_int, c_void_p, c_char_p, c_char_p)

# The orchestrator client: declared when the library has it, so that an
# older librhizos still loads (rhizos.Client then says what is missing).
_CLIENT_PROTOS = {
    "rz_client_new": (c_int, [_PP, c_char_p, c_char_p]),
    "rz_client_free": (None, [_P]),
    "rz_client_set_key": (c_int, [_P, c_char_p]),
    "rz_client_set_timeout": (c_int, [_P, c_long]),
    "rz_client_set_ca_file": (c_int, [_P, c_char_p]),
    "rz_client_call": (c_int, [_P, c_char_p, c_char_p, c_char_p, c_uint,
                               POINTER(c_long), _STR_OUT]),
    "rz_client_events": (c_int, [_P, c_char_p, c_long, CLIENT_EVENT_CB, c_void_p]),
    "rz_client_deploy": (c_int, [_P, c_char_p, c_size_t, c_char_p, c_char_p,
                                 POINTER(c_uint64), _P]),
    "rz_client_flow_status": (c_int, [_P, c_uint64, _STR_OUT]),
    "rz_client_flow_cancel": (c_int, [_P, c_uint64]),
}


def _env_library() -> Tuple[str, str]:
    """(variable, path) of the library named in the environment, if any:
    RHIZOS_LIBRARY, or RHIZOS_LIB (its older name)."""
    for var in ("RHIZOS_LIBRARY", "RHIZOS_LIB"):
        value = os.environ.get(var)
        if value:
            return var, value
    return "", ""


def _installed_libdir() -> Optional[str]:
    """The libdir `meson install` put librhizos in (it writes _install.py
    beside this file); None for a wheel or a checkout."""
    try:
        mod = importlib.import_module(".._install", __name__)
    except ImportError:
        return None
    libdir = getattr(mod, "LIBDIR", None)
    return libdir if isinstance(libdir, str) else None


def _candidates() -> List[str]:
    """Library files to try, in order, before the system loader."""
    out = [os.path.join(_HERE, n) for n in _SONAMES]
    # bindings/python/rhizos -> the checkout's root: build*/lib/librhizos.so
    root = os.path.normpath(os.path.join(_HERE, "..", "..", ".."))
    if os.path.isfile(os.path.join(root, "include", "rhizos", "common.h")):
        builds = sorted(glob.glob(os.path.join(root, "build*", "lib", "librhizos.so")))
        # the plain build/ first, then the others in name order
        builds.sort(key=lambda p: os.path.basename(os.path.dirname(os.path.dirname(p))) != "build")
        out += builds
    libdir = _installed_libdir()
    if libdir:
        out += [os.path.join(libdir, n) for n in reversed(_SONAMES)]
    return out


def _load() -> ctypes.CDLL:
    var, env = _env_library()
    if env:
        # Named explicitly: that file or an error, never a silent fallback.
        if not os.path.exists(env):
            raise LibraryNotFound("%s=%s: no such file" % (var, env))
        try:
            return ctypes.CDLL(env)
        except OSError as e:
            raise LibraryNotFound("%s=%s: %s" % (var, env, e)) from None
    tried = []
    for path in _candidates():
        if not os.path.exists(path):
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    # The system loader: the runtime package's soname first.
    for name in (ctypes.util.find_library("rhizos"),) + tuple(reversed(_SONAMES)):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            tried.append("%s (%s)" % (name, e))
    raise LibraryNotFound("librhizos not found; set RHIZOS_LIBRARY to the path of "
                          "librhizos.so (tried: %s)" % ", ".join(tried or ["nothing"]))


def _declare(lib: ctypes.CDLL) -> List[str]:
    """Declare every prototype; returns the client calls that are missing."""
    for name, (restype, argtypes) in _PROTOS.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    missing = []
    for name, (restype, argtypes) in _CLIENT_PROTOS.items():
        fn = getattr(lib, name, None)
        if fn is None:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    return missing


lib = _load()
missing_client_calls: List[str] = _declare(lib)
path: Optional[str] = getattr(lib, "_name", None)

JSON = Dict[str, Any]
StrPath = Union[str, "os.PathLike[str]"]


def version() -> str:
    """The version of the loaded librhizos, e.g. "0.1.0"."""
    return dec(lib.rz_version())


def take_string(ptr: c_void_p) -> str:
    """Copy a library-allocated NUL-terminated string and release it."""
    if not ptr.value:
        return ""
    try:
        return ctypes.string_at(ptr.value).decode("utf-8", "replace")
    finally:
        lib.rz_free(ptr)


def take_bytes(ptr: c_void_p, n: int) -> bytes:
    """Copy n library-allocated bytes and release them."""
    if not ptr.value:
        return b""
    try:
        return ctypes.string_at(ptr.value, n)
    finally:
        lib.rz_free(ptr)


def json_object(text: str) -> JSON:
    """A JSON object the library wrote (a run, a plan, a status) as a dict."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        raise ValueError("librhizos wrote %s where a JSON object was due"
                         % type(doc).__name__)
    return doc


def json_array(text: str) -> List[Any]:
    """A JSON array the library wrote (a list of runs) as a list."""
    doc = json.loads(text)
    if not isinstance(doc, list):
        raise ValueError("librhizos wrote %s where a JSON array was due"
                         % type(doc).__name__)
    return doc


@overload
def enc(s: None) -> None: ...
@overload
def enc(s: Union[str, bytes, "os.PathLike[str]"]) -> bytes: ...


def enc(s: Union[str, bytes, "os.PathLike[str]", None]) -> Optional[bytes]:
    """A str argument as UTF-8 bytes; NUL bytes are refused (C would cut them)."""
    if s is None:
        return None
    if isinstance(s, os.PathLike):
        s = os.fspath(s)
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    if b"\0" in b:
        raise ValueError("string argument contains a NUL byte")
    return b


def dec(b: Optional[bytes]) -> str:
    return b.decode("utf-8", "replace") if b else ""


H = TypeVar("H", bound="Handle")


class Handle:
    """Owner of one C handle: freed exactly once, by close() or on GC.

    Every use goes through `_use()`, which holds the object's lock for the
    duration of the C call (so close() from another thread waits for it) and
    raises ClosedError after close instead of passing a dangling pointer.
    """

    _free_fn: ClassVar[str] = ""    # name of the C function releasing the handle
    _what: ClassVar[str] = "object"

    def __init__(self) -> None:
        self._h = c_void_p()
        self._lock = threading.RLock()
        self._closing = False

    def _use(self) -> "_Using":
        return _Using(self)

    @property
    def closed(self) -> bool:
        return self._closing or not self._h.value

    def close(self) -> None:
        """Release the C handle now. Calling it again does nothing."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            h = getattr(self, "_h", None)
            if h is not None and h.value:
                self._release()
                getattr(lib, self._free_fn)(h)
                self._h = c_void_p()

    def _release(self) -> None:
        """Hook: drop dependent state before the handle is freed."""

    def __enter__(self: H) -> H:
        self._use().check()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class _Using:
    def __init__(self, obj: Handle) -> None:
        self.obj = obj

    def check(self) -> None:
        if self.obj._closing or not self.obj._h.value:
            from .errors import ClosedError
            raise ClosedError("%s is closed" % self.obj._what)

    def __enter__(self) -> c_void_p:
        self.obj._lock.acquire()
        try:
            self.check()
        except BaseException:
            self.obj._lock.release()
            raise
        return self.obj._h

    def __exit__(self, *exc: object) -> None:
        self.obj._lock.release()


__all__ = ["lib", "path", "version", "LibraryNotFound", "Handle"]
