"""Placement of jobs on nodes (rz_matcher), and this machine's hardware."""
from __future__ import annotations

import json
from ctypes import byref, c_int, c_size_t, c_void_p
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

from . import errors
from ._lib import (Handle, RzMatcherStats, RzNodeUsage, RzPlacement, dec, enc, lib,
                   json_object, take_string)

JSONLike = Union[str, bytes, Mapping[str, Any]]


def _text(obj: JSONLike) -> bytes:
    if isinstance(obj, (str, bytes)):
        return enc(obj)
    return json.dumps(obj).encode("utf-8")


@dataclass(frozen=True)
class Placement:
    """Where a job went: the node id, the estimated cost in whole micro-dollars, and
    the ticket that release() takes back."""
    job: str
    node: str
    cost_micros: int
    ticket: int


class _Caps(Handle):
    _free_fn, _what = "rz_caps_free", "node capabilities"

    def __init__(self, node: JSONLike) -> None:
        super().__init__()
        data = _text(node)
        errors.check(lib.rz_caps_parse(byref(self._h), data, len(data)), "node")


class _Reqs(Handle):
    _free_fn, _what = "rz_reqs_free", "job requirements"

    def __init__(self, job: JSONLike) -> None:
        super().__init__()
        data = _text(job)
        errors.check(lib.rz_reqs_parse(byref(self._h), data, len(data)), "job")
        doc = job if isinstance(job, Mapping) else json.loads(data)
        self.id = str(doc.get("id", "")) if isinstance(doc, Mapping) else ""


class Matcher(Handle):
    """Places jobs on nodes and reserves their capacity until release().

    Nodes and jobs are dicts (or JSON text) in the shapes of DESIGN §4:
    nodes {"id", "cpu", "memory_mb", "gpus", "prices", ...}, jobs {"id",
    "requirements": {...}} or a bare requirements object. `policy` is
    "cheapest", "fastest", "reputation", "binpack" or "spread".
    """
    _free_fn, _what = "rz_matcher_free", "Matcher"

    def __init__(self, policy: str = "cheapest",
                 nodes: Iterable[JSONLike] = ()) -> None:
        super().__init__()
        p = c_int()
        errors.check(lib.rz_policy_parse(enc(policy), byref(p)), "policy")
        errors.check(lib.rz_matcher_new(byref(self._h), p.value))
        try:
            for n in nodes:
                self.add_node(n)
        except BaseException:
            self.close()
            raise

    def add_node(self, node: JSONLike) -> int:
        """Add a node (ids must be unique); returns its index."""
        caps = _Caps(node)
        try:
            with self._use() as h:
                idx = c_size_t()
                errors.check(lib.rz_matcher_add(h, caps._h, byref(idx)), "add node")
                return idx.value
        finally:
            caps.close()

    def remove_node(self, node_id: str) -> None:
        """Take a node out of placement (its reservations can still be released)."""
        with self._use() as h:
            errors.check(lib.rz_matcher_remove(h, enc(node_id)), node_id)

    @property
    def nodes(self) -> List[str]:
        with self._use() as h:
            return [dec(lib.rz_matcher_node_id(h, i))
                    for i in range(lib.rz_matcher_count(h))]

    def place(self, job: JSONLike) -> Optional[Placement]:
        """Place a job and reserve capacity; None when no node fits now
        (explain() says why)."""
        reqs = _Reqs(job)
        try:
            with self._use() as h:
                pl = RzPlacement()
                rc = lib.rz_matcher_place(h, reqs._h, byref(pl))
                if rc == -4:       # RZ_ENOENT: nothing fits now
                    return None
                errors.check(rc, "place")
                return Placement(reqs.id, dec(pl.node_id), pl.cost_micros, pl.ticket)
        finally:
            reqs.close()

    def place_all(self, jobs: Iterable[JSONLike]) -> List[Dict[str, Any]]:
        """Place jobs in order, as `rhizos match --json` does: [{"job",
        "node" (None if none), "cost_micros", "reason"}]."""
        out = []
        for j in jobs:
            p = self.place(j)
            if p:
                out.append({"job": p.job, "node": p.node, "cost_micros": p.cost_micros,
                            "ticket": p.ticket})
            else:
                out.append({"job": _job_id(j), "node": None,
                            "cost_micros": 0, "reason": self.explain(j)})
        return out

    def release(self, placement: Union[Placement, int]) -> None:
        """Give a placement's capacity back (NotFound for an unknown ticket)."""
        ticket = placement.ticket if isinstance(placement, Placement) else int(placement)
        with self._use() as h:
            errors.check(lib.rz_matcher_release(h, ticket), "release")

    def explain(self, job: JSONLike) -> str:
        """Why the job fits no node now, per constraint ("" if it fits)."""
        reqs = _Reqs(job)
        try:
            with self._use() as h:
                out = c_void_p()
                errors.check(lib.rz_matcher_explain(h, reqs._h, byref(out)))
                return take_string(out)
        finally:
            reqs.close()

    def usage(self, node: Union[str, int]) -> Dict[str, int]:
        """Reserved and total capacity of a node (by id or index)."""
        with self._use() as h:
            if isinstance(node, str):
                ids = [dec(lib.rz_matcher_node_id(h, i))
                       for i in range(lib.rz_matcher_count(h))]
                if node not in ids:
                    raise errors.NotFound("no node %r" % node, code="RZ_ENOENT")
                node = ids.index(node)
            u = RzNodeUsage()
            errors.check(lib.rz_matcher_usage(h, node, byref(u)), "usage")
            return {n: getattr(u, n) for n, _ in RzNodeUsage._fields_}

    def stats(self) -> Dict[str, int]:
        with self._use() as h:
            s = RzMatcherStats()
            lib.rz_matcher_stats_get(h, byref(s))
            return {n: getattr(s, n) for n, _ in RzMatcherStats._fields_}

    def __len__(self) -> int:
        with self._use() as h:
            return int(lib.rz_matcher_count(h))


def _job_id(job: JSONLike) -> str:
    doc = job if isinstance(job, Mapping) else json.loads(job)
    return str(doc.get("id", "")) if isinstance(doc, Mapping) else ""


def estimate_cost(node: JSONLike, job: JSONLike) -> int:
    """Estimated cost in whole micro-dollars of running `job` on `node`."""
    caps, reqs = _Caps(node), _Reqs(job)
    try:
        return int(lib.rz_match_cost(caps._h, reqs._h))
    finally:
        caps.close()
        reqs.close()


def detect_hardware(data_dir: Optional[str] = None) -> Dict[str, Any]:
    """This machine's capabilities (what `rhizos-node info --json` prints)."""
    from ._lib import RzHwOpts
    caps = c_void_p()
    opts = RzHwOpts(1, enc(data_dir), None, None, 0, 0)
    try:
        errors.check(lib.rz_hw_detect(byref(caps), byref(opts)), "detect")
        out = c_void_p()
        errors.check(lib.rz_caps_to_json(caps, 0, byref(out)))
        return json_object(take_string(out))
    finally:
        lib.rz_caps_free(caps)
