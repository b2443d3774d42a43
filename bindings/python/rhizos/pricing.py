"""What a flow costs: renting nodes versus calling API providers
(include/rhizos/estimate.h), from price tables such as data/prices/."""
from __future__ import annotations

import json
import os
from ctypes import byref, c_void_p
from typing import Any, Dict, Optional, Sequence, Union

from . import errors
from ._lib import Handle, enc, json_object, lib, take_string
from .flow import Flow

PathLike = Union[str, "os.PathLike[str]"]


def _default_prices_dir() -> Optional[str]:
    """data/prices in the working directory, else in the checkout this
    package sits in (as `rhizos flow estimate` does)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in ("data/prices",
                 os.path.join(here, "..", "..", "..", "data", "prices")):
        if os.path.isdir(cand):
            return os.path.normpath(cand)
    return None


class Prices(Handle):
    """Price tables: node classes and API providers.

    Prices() loads the default tables (data/prices); Prices(paths) loads
    each given JSON file, or a folder's nodes.json and providers.json.
    The first table to name a node class wins.
    """
    _free_fn, _what = "rz_prices_free", "Prices"

    def __init__(self, paths: Optional[Sequence[PathLike]] = None) -> None:
        super().__init__()
        errors.check(lib.rz_prices_new(byref(self._h)))
        try:
            if paths is None:
                d = _default_prices_dir()
                if d is None:
                    raise errors.NotFound("no price tables: data/prices not found; "
                                          "pass Prices([FILE, ...])", code="RZ_ENOENT")
                paths = [d]
            for p in paths:
                self.add(p)
        except BaseException:
            self.close()
            raise

    def add(self, path: PathLike) -> None:
        """Add one table file, or a folder's nodes.json and providers.json."""
        path = os.fspath(path)
        files = ([os.path.join(path, "nodes.json"), os.path.join(path, "providers.json")]
                 if os.path.isdir(path) else [path])
        with self._use() as h:
            for f in files:
                errors.check(lib.rz_prices_add_file(h, enc(f)), f)

    def add_json(self, doc: Union[str, Dict[str, Any]], source: str = "prices") -> None:
        """Add the tables of one JSON document ({"nodes"} and/or {"providers"})."""
        text = doc if isinstance(doc, str) else json.dumps(doc)
        data = enc(text)
        with self._use() as h:
            errors.check(lib.rz_prices_add_json(h, data, len(data), enc(source)))

    @property
    def node_classes(self) -> int:
        with self._use() as h:
            return int(lib.rz_prices_node_count(h))

    @property
    def providers(self) -> int:
        with self._use() as h:
            return int(lib.rz_prices_provider_count(h))


def estimate(flow: Flow, prices: Optional[Union[Prices, Sequence[PathLike]]] = None
             ) -> Dict[str, Any]:
    """The cost estimate of a validated flow:

        {"steps": [{"step", "module", "estimate_seconds",
                    "rent": {"node_class", "cost_micros"} | None,
                    "api": {"provider", "model", "cost_micros"} | None,
                    "recommendation": "rent" | "api" | "none", "cost_micros"}],
         "total_micros", "complete", "prices": {"nodes_date", "providers_date"}}

    `prices`: a Prices, a list of table files/folders, or None for the
    defaults. An unvalidated flow raises StateError.
    """
    owned = not isinstance(prices, Prices)
    p = prices if isinstance(prices, Prices) else Prices(prices)
    est = c_void_p()
    try:
        with flow._use() as fh, p._use() as ph:
            errors.check(lib.rz_estimate_flow(byref(est), fh, ph), "estimate")
            out = c_void_p()
            errors.check(lib.rz_estimate_to_json(est, byref(out)))
            return json_object(take_string(out))
    finally:
        lib.rz_estimate_free(est)
        if owned:
            p.close()


__all__ = ["Prices", "estimate"]
