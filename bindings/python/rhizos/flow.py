"""Flows: load (JSON builder format, FluxGraph YAML, CBOR), validate against
module registries, plan, export."""
from __future__ import annotations

import ctypes
import json
import os
from ctypes import byref, c_size_t, c_void_p
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

from . import errors
from ._lib import (Handle, RzFlowExpandOpts, StrPath, dec, enc, json_object, lib, take_bytes,
                   take_string)

_FORMATS = {None: 0, "auto": 0, "json": 1, "yaml": 2, "yml": 2, "cbor": 3}
_FORMAT_NAMES = {1: "json", 2: "yaml", 3: "cbor"}
_SEVERITY = {0: "error", 1: "warning", 2: "note"}
_EXPORT_PRETTY, _EXPORT_BUILDER = 1, 2


@dataclass(frozen=True)
class Diagnostic:
    """One problem, located FILE:LINE:COLUMN (line/column 0 when unknown)."""
    file: str
    line: int
    column: int
    code: str            # the status name, e.g. "RZ_EUNKNOWN"
    message: str
    severity: str = "error"
    pointer: str = ""    # JSON pointer of the offending value, "" if none

    def __str__(self) -> str:
        return "%s:%d:%d: %s: %s" % (self.file, self.line, self.column,
                                     self.severity, self.message)


@dataclass(frozen=True)
class Step:
    """A step (builder "node") of a flow and the module it instantiates;
    `flow` the file a sub-flow step runs (None once expanded, and for a
    module step)."""
    id: str
    module: str
    flow: Optional[str] = None


class _Diags(Handle):
    _free_fn, _what = "rz_diags_free", "diagnostics list"

    def __init__(self) -> None:
        super().__init__()
        errors.check(lib.rz_diags_new(byref(self._h)))

    def items(self) -> List[Diagnostic]:
        with self._use() as h:
            lib.rz_diags_sort(h)
            out = []
            for i in range(lib.rz_diags_count(h)):
                d = lib.rz_diags_get(h, i).contents
                out.append(Diagnostic(dec(d.file), d.line, d.column,
                                      errors.status_name(d.code), dec(d.message),
                                      _SEVERITY.get(d.severity, "error"),
                                      dec(d.pointer)))
            return out


def _default_registry_paths() -> List[str]:
    """$RHIZOS_MODULES, then examples/modules in the working directory or in
    the checkout this package lives in (as the CLI does)."""
    out: List[str] = []
    env = os.environ.get("RHIZOS_MODULES")
    if env:
        out.append(env)      # a colon-separated list: added as one
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in ("examples/modules",
                 os.path.join(here, "..", "..", "..", "examples", "modules")):
        if os.path.isdir(cand):
            out.append(os.path.normpath(cand))
            break
    return out


class Registry(Handle):
    """A module registry: folders of <module>/module.json and HTTP indexes.

    Registry(["examples/modules", "https://example.org/index.json"],
    trusted=[publisher_key_hex]). Registry() with no paths uses the defaults
    ($RHIZOS_MODULES and examples/modules). Manifests that fail to load are
    skipped and listed in .diagnostics.
    """
    _free_fn, _what = "rz_registry_free", "Registry"

    def __init__(self, paths: Optional[Iterable[StrPath]] = None,
                 trusted: Sequence[str] = ()) -> None:
        super().__init__()
        errors.check(lib.rz_registry_new(byref(self._h)))
        self.diagnostics: List[Diagnostic] = []
        defaults = paths is None
        diags = _Diags()
        try:
            for key in trusted:
                errors.check(lib.rz_registry_trust(self._h, enc(key)), "trusted key")
            for given in (_default_registry_paths() if paths is None else paths):
                p = os.fspath(given)
                if defaults and ":" in p and not p.startswith("http"):
                    rc = lib.rz_registry_add_path_list(self._h, enc(p), diags._h)
                else:
                    rc = lib.rz_registry_add(self._h, enc(p), diags._h)
                if rc < 0 and not defaults:
                    raise errors.from_status(rc, context=p)
            self.diagnostics = diags.items()
        except BaseException:
            self.close()
            raise
        finally:
            diags.close()

    # A flow validated against this registry points into it: close() waits
    # (the C registry is freed) until the last such flow lets go.
    _users = 0

    def _acquire(self) -> None:
        with self._lock:
            self._use().check()
            self._users += 1

    def _unref(self) -> None:
        with self._lock:
            self._users -= 1
            if self._closing and self._users == 0:
                self._closing = False
                super().close()
                self._closing = True

    def close(self) -> None:
        """Release the registry; flows validated against it keep it alive
        until they are closed."""
        with self._lock:
            if self._users > 0:
                self._closing = True
            else:
                super().close()

    def modules(self) -> List[str]:
        """Every module as "id@version", sorted."""
        with self._use() as h:
            out = []
            for i in range(lib.rz_registry_count(h)):
                m = lib.rz_registry_get(h, i)
                out.append("%s@%s" % (dec(lib.rz_module_id(m)),
                                      dec(lib.rz_module_version(m))))
            return out

    def __len__(self) -> int:
        with self._use() as h:
            return int(lib.rz_registry_count(h))


class Flow(Handle):
    """A loaded flow. Create with rhizos.load_flow()."""
    _free_fn, _what = "rz_flow_free", "Flow"

    def __init__(self) -> None:
        super().__init__()
        self._registry: Optional[Registry] = None
        self._owns_registry = False
        self._validated = False

    # -- identity --------------------------------------------------------
    @property
    def name(self) -> str:
        with self._use() as h:
            return dec(lib.rz_flow_name(h))

    @property
    def file(self) -> str:
        with self._use() as h:
            return dec(lib.rz_flow_file(h))

    @property
    def format(self) -> str:
        """"json", "yaml" or "cbor": the syntax it was loaded from."""
        with self._use() as h:
            return _FORMAT_NAMES.get(lib.rz_flow_format(h), "json")

    @property
    def steps(self) -> List[Step]:
        with self._use() as h:
            return [Step(dec(lib.rz_flow_step_id(h, i)),
                         dec(lib.rz_flow_step_module(h, i)),
                         _opt_dec(lib.rz_flow_step_subflow(h, i)))
                    for i in range(lib.rz_flow_step_count(h))]

    @property
    def has_subflows(self) -> bool:
        """True while a step runs another flow file (`flow: FILE`) that
        validate(), plan() or expand() has not put in its place yet."""
        with self._use() as h:
            return any(lib.rz_flow_step_subflow(h, i)
                       for i in range(lib.rz_flow_step_count(h)))

    @property
    def nodes(self) -> List[Dict[str, Any]]:
        """The steps in the JSON builder shape: [{id, moduleId, moduleVersion,
        config, credentials, position}] (credential values stripped)."""
        return self.to_dict(builder=True).get("nodes", [])

    @property
    def connections(self) -> List[Dict[str, Any]]:
        """Edges in the builder shape: [{id, source:{nodeId, port},
        target:{nodeId, port}}]."""
        return self.to_dict(builder=True).get("connections", [])

    @property
    def validated(self) -> bool:
        """True once validate() found no error (modules are resolved)."""
        return self._validated and not self.closed

    def __len__(self) -> int:
        with self._use() as h:
            return int(lib.rz_flow_step_count(h))

    def __repr__(self) -> str:
        if self.closed:
            return "<rhizos.Flow (closed)>"
        return "<rhizos.Flow %r: %d steps>" % (self.name, len(self))

    # -- checks ----------------------------------------------------------
    def validate(self, registries: Union[Registry, Sequence[Union[StrPath, Registry]], None] = None
                 ) -> List[Diagnostic]:
        """Check the graph against module registries and return every
        problem found (an empty list: the flow is valid).

        Sub-flows are expanded first, as `rhizos flow validate` does: each
        step `flow: FILE` (relative to this flow's file, or to the
        `filename` given to load_flow; the current folder without one) is
        replaced by the child's steps, named "<step>-<child step>".

        `registries`: folders / index URLs, or one Registry; None uses the
        defaults ($RHIZOS_MODULES and examples/modules); [] checks the
        structure only, without modules (run() then refuses the flow).
        """
        reg: Optional[Registry] = None
        owned = False
        if isinstance(registries, Registry):
            reg = registries
        elif registries is None:
            reg, owned = Registry(None), True
        elif len(registries) > 0:
            paths = [r for r in registries if not isinstance(r, Registry)]
            if not paths:
                if len(registries) != 1:
                    raise errors.InvalidArgument("pass one Registry, or paths",
                                                 code="RZ_EINVAL")
                only = registries[0]
                reg = only if isinstance(only, Registry) else None
            elif len(paths) != len(registries):
                raise errors.InvalidArgument("pass one Registry, or paths",
                                             code="RZ_EINVAL")
            else:
                reg, owned = Registry(paths), True
        diags = _Diags()
        try:
            return self._validate(reg, owned, diags)
        except BaseException:
            if owned and reg is not None:
                reg.close()
            raise
        finally:
            diags.close()

    def _validate(self, reg: Optional[Registry], owned: bool,
                  diags: _Diags) -> List[Diagnostic]:
        with self._use():
            if reg is not None:
                reg._use().check()
            # rz_flow_expand validates too; it may replace the handle
            opts = _expand_opts()
            rc = lib.rz_flow_expand_with(byref(self._h), reg._h if reg is not None else None,
                                         byref(opts), diags._h)
            items = diags.items()
            if rc < 0 and rc != -6 and not items:
                raise errors.from_status(rc)
            # the flow now points into the registry: keep it alive
            if reg is not None:
                reg._acquire()
            self._drop_registry()
            self._registry, self._owns_registry = reg, owned
            self._validated = rc == 0 and reg is not None
            return items

    def _drop_registry(self) -> None:
        reg, owned = self._registry, self._owns_registry
        self._registry, self._owns_registry = None, False
        if reg is not None:
            reg._unref()
            if owned:
                reg.close()

    def expand(self) -> List[Diagnostic]:
        """Put each sub-flow step's child flow in its place (structure
        checked, modules not: validate() checks those) and return the
        problems found; the flow is unchanged if there is any error. A flow
        without sub-flows is left as it is. plan() calls this."""
        if not self.has_subflows:
            return []
        diags = _Diags()
        try:
            with self._use():
                opts = _expand_opts()
                rc = lib.rz_flow_expand_with(byref(self._h), None, byref(opts), diags._h)
                items = diags.items()
                if rc < 0 and rc != -6 and not items:
                    raise errors.from_status(rc)
                return items
        finally:
            diags.close()

    def _expanded(self) -> None:
        """expand(), raising ValidationError on a problem."""
        items = self.expand()
        errs = [d for d in items if d.severity == "error"]
        if errs:
            raise errors.ValidationError(str(errs[0]), code="RZ_EINVALID",
                                         diagnostics=items)

    def plan(self) -> List[List[str]]:
        """Stages in execution order, e.g. [["a"], ["b", "c"], ["d"]].
        A cycle raises CycleError naming it (see .diagnostics)."""
        return [[str(step) for step in stage] for stage in self.plan_info()["stages"]]

    def plan_info(self) -> Dict[str, Any]:
        """The full plan: {"stages", "critical_path", "critical_seconds",
        "steps"}. Sub-flows are expanded first (expand())."""
        self._expanded()
        diags = _Diags()
        plan = c_void_p()
        try:
            with self._use() as h:
                rc = lib.rz_plan_build(byref(plan), h, diags._h)
                if rc < 0:
                    raise errors.from_status(rc, diagnostics=diags.items())
                out = c_void_p()
                errors.check(lib.rz_plan_to_json(plan, byref(out)))
                return json_object(take_string(out))
        finally:
            lib.rz_plan_free(plan)
            diags.close()

    # -- export ----------------------------------------------------------
    def to_json(self, pretty: bool = False, builder: bool = False) -> str:
        """Canonical JSON (credential values stripped); `builder` gives the
        JSON builder shape even for a YAML flow."""
        flags = (_EXPORT_PRETTY if pretty else 0) | (_EXPORT_BUILDER if builder else 0)
        with self._use() as h:
            out, n = c_void_p(), c_size_t()
            errors.check(lib.rz_flow_to_json(h, flags, byref(out), byref(n)))
            return take_bytes(out, n.value).decode("utf-8")

    def to_dict(self, builder: bool = False) -> Dict[str, Any]:
        return json_object(self.to_json(builder=builder))

    def export(self) -> str:
        """What `rhizos flow export` prints: pretty canonical JSON with every
        credential value stripped."""
        return self.to_json(pretty=True)

    def to_yaml(self) -> str:
        with self._use() as h:
            out, n = c_void_p(), c_size_t()
            errors.check(lib.rz_flow_to_yaml(h, byref(out), byref(n)))
            return take_bytes(out, n.value).decode("utf-8")

    def to_cbor(self) -> bytes:
        with self._use() as h:
            out, n = c_void_p(), c_size_t()
            errors.check(lib.rz_flow_to_cbor(h, byref(out), byref(n)))
            return take_bytes(out, n.value)

    def close(self) -> None:
        """Release the flow (and the registry validate() made for it)."""
        with self._lock:
            super().close()
            self._validated = False
            self._drop_registry()


def _expand_opts() -> RzFlowExpandOpts:
    """As the CLI expands: named sub-flows (flow://NAME@N) from the folder
    $RHIZOS_FLOWS, when set."""
    opts = RzFlowExpandOpts()
    opts.version = RzFlowExpandOpts.VERSION
    opts.flows_dir = enc(os.environ.get("RHIZOS_FLOWS") or None)
    return opts


def _opt_dec(b: Optional[bytes]) -> Optional[str]:
    return None if b is None else dec(b)


def _looks_like_path(s: str) -> bool:
    """An existing file, or one line that cannot be a flow document (any
    document has a "key: value" or a "{"): a missing file is NotFound, not
    a puzzling parse error."""
    if "\n" in s or len(s) >= 4096:
        return False
    return os.path.exists(s) or ("{" not in s and ": " not in s and not s.endswith(":"))


def load_flow(source: Union[str, bytes, "os.PathLike[str]"], format: Optional[str] = None,
              filename: Optional[str] = None) -> Flow:
    """Load a flow from a file path, or from document text (str) or bytes.

    `format` is "json", "yaml", "cbor" or None (by extension, else by
    content). A str that names an existing file, or any one-line str
    without "{" or ": ", is a path; any other str is the document itself. Problems raise ParseError /
    ValidationError with every problem in `.diagnostics`.
    """
    try:
        fmt = _FORMATS[format.lower() if isinstance(format, str) else format]
    except KeyError:
        raise errors.InvalidArgument("unknown format %r (json, yaml, cbor)" % (format,),
                                     code="RZ_EINVAL") from None
    flow = Flow()
    diags = _Diags()
    try:
        if isinstance(source, os.PathLike) or (isinstance(source, str)
                                                and _looks_like_path(source)):
            rc = lib.rz_flow_load(byref(flow._h), enc(os.fspath(source)), fmt, diags._h)
        else:
            data = source.encode("utf-8") if isinstance(source, str) else bytes(source)
            buf = ctypes.create_string_buffer(data, len(data))
            rc = lib.rz_flow_parse(byref(flow._h), buf, len(data), fmt,
                                   enc(filename), diags._h)
        if rc < 0:
            raise errors.from_status(rc, diagnostics=diags.items())
        return flow
    finally:
        diags.close()
