"""The escrow ledger (rz_ledger): double-entry accounts, holds, settlement.

Money is integer micro-dollars ("micros", 1e-6 USD; 1_000_000 is $1). The
platform fee is round-half-up fee_bps of a settled cost (rz_ledger_fee), the
rest to the node. Ids are 128-bit: pass an int (0 .. 2**128-1) or a
string ("0x..." hex, 32 hex digits, or decimal). Operations are idempotent
per id: every call takes an optional `id`; when left out a random one is
made and returned, so a caller that retries should pass the id it got.
"""
from __future__ import annotations

import json
import os
import secrets
from ctypes import byref, c_uint64, c_void_p
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple, Union

from . import errors
from ._lib import (Handle, RzLedgerAccount, RzLedgerId, RzLedgerOpts,
                   RzLedgerResult, RzLedgerStats, enc, json_object, lib,
                   take_string)

LedgerId = Union[int, str]
PLATFORM, ESCROW, EXTERNAL = 1, 2, 3        # the ledger's own accounts
_KINDS = {"client": 1, "node": 2, "platform": 3, "escrow": 4, "external": 5}
_KIND_NAMES = {v: k for k, v in _KINDS.items()}
_U128 = (1 << 128) - 1


def parse_id(value: LedgerId) -> int:
    """An id as an int; InvalidArgument for anything not a 128-bit id."""
    if isinstance(value, bool):
        raise errors.InvalidArgument("ledger id must be an int or a string",
                                     code="RZ_EINVAL")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        s = value.strip()
        try:
            if s.lower().startswith("0x"):
                n = int(s[2:], 16) if 1 <= len(s) - 2 <= 32 else -1
            elif len(s) == 32:
                n = int(s, 16)
            elif s.isdigit():
                n = int(s, 10)
            else:
                n = -1
        except ValueError:
            n = -1
    else:
        raise errors.InvalidArgument("ledger id must be an int or a string",
                                     code="RZ_EINVAL")
    if not 0 <= n <= _U128:
        raise errors.InvalidArgument("not a 128-bit ledger id: %r" % (value,),
                                     code="RZ_EINVAL")
    return n


def format_id(n: int) -> str:
    """32 lowercase hex digits, as the CLI and the ledger export write ids."""
    return "%032x" % n


def new_id() -> int:
    """A random 128-bit id (never one of the reserved ids below 16)."""
    while True:
        n = secrets.randbits(128)
        if n >= 16:
            return n


def _cid(value: LedgerId) -> RzLedgerId:
    n = parse_id(value)
    return RzLedgerId(n >> 64, n & ((1 << 64) - 1))


def _micros(v: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < (1 << 64):
        raise errors.InvalidArgument("micros must be an int from 0 to 2**64-1, not %r"
                                     % (v,), code="RZ_EINVAL")
    return v


@dataclass(frozen=True)
class Account:
    """An account's balances in micros; `available` is what it may spend."""
    id: int
    kind: str
    debits_posted: int
    debits_pending: int
    credits_posted: int
    credits_pending: int
    available: int


class Ledger(Handle):
    """A ledger in DATA_DIR/ledger (created if missing). One writer per
    folder: a second Ledger on the same path raises StateError.

    with rhizos.Ledger(path) as l:
        l.create_account(client, "client"); l.test_credit(client, 1000)
        l.hold(job, client, 500); l.settle(job, node, 420)
    """
    _free_fn, _what = "rz_ledger_close", "Ledger"

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, fee_bps: int = 500,
                 durable: bool = True, read_only: bool = False) -> None:
        super().__init__()
        if not 0 <= fee_bps <= 10000:
            raise errors.InvalidArgument("fee_bps must be 0..10000", code="RZ_EINVAL")
        opts = RzLedgerOpts(1, fee_bps, 1 if read_only else 0, 1 if durable else 0, 0, 0, 0)
        self.path = os.fspath(path)
        self.fee_bps = fee_bps
        errors.check(lib.rz_ledger_open(byref(self._h), enc(self.path), byref(opts)),
                     self.path)

    # -- accounts ---------------------------------------------------------
    def create_account(self, account: LedgerId, kind: str = "client") -> int:
        """Create a client or node account (creating it again is fine)."""
        if kind not in ("client", "node"):
            raise errors.InvalidArgument("kind must be 'client' or 'node'",
                                         code="RZ_EINVAL")
        with self._use() as h:
            errors.check(lib.rz_ledger_create_account(h, _cid(account), _KINDS[kind]),
                         "create account")
        return parse_id(account)

    def balance(self, account: LedgerId) -> Account:
        with self._use() as h:
            a = RzLedgerAccount()
            errors.check(lib.rz_ledger_balance(h, _cid(account), byref(a)), "balance")
            return Account((a.id.hi << 64) | a.id.lo, _KIND_NAMES.get(a.kind, str(a.kind)),
                           a.debits_posted, a.debits_pending, a.credits_posted,
                           a.credits_pending, lib.rz_ledger_available(byref(a)))

    # -- money in and out -------------------------------------------------
    def _op(self, fn: str, ctx: str, *args: Any) -> None:
        with self._use() as h:
            errors.check(getattr(lib, fn)(h, *args), ctx)

    def test_credit(self, account: LedgerId, micros: int, *,
                    id: Optional[LedgerId] = None) -> int:
        """Credit an account from outside (test money); returns the id."""
        tid = parse_id(id) if id is not None else new_id()
        self._op("rz_ledger_test_credit", "test credit", _cid(tid), _cid(account),
                 _micros(micros))
        return tid

    def deposit_request(self, account: LedgerId, micros: int, *,
                        id: Optional[LedgerId] = None) -> int:
        """A pending deposit (money on its way in); confirm it with deposit_confirm."""
        tid = parse_id(id) if id is not None else new_id()
        self._op("rz_ledger_deposit_request", "deposit", _cid(tid), _cid(account),
                 _micros(micros))
        return tid

    def deposit_confirm(self, request: LedgerId, *, id: Optional[LedgerId] = None) -> int:
        tid = parse_id(id) if id is not None else new_id()
        self._op("rz_ledger_deposit_confirm", "deposit confirm", _cid(tid), _cid(request))
        return tid

    def withdraw_request(self, account: LedgerId, micros: int, *,
                         id: Optional[LedgerId] = None) -> int:
        tid = parse_id(id) if id is not None else new_id()
        self._op("rz_ledger_withdraw_request", "withdraw", _cid(tid), _cid(account),
                 _micros(micros))
        return tid

    def withdraw_complete(self, request: LedgerId, *,
                          id: Optional[LedgerId] = None) -> int:
        tid = parse_id(id) if id is not None else new_id()
        self._op("rz_ledger_withdraw_complete", "withdraw complete", _cid(tid),
                 _cid(request))
        return tid

    def withdraw_cancel(self, request: LedgerId, *,
                        id: Optional[LedgerId] = None) -> int:
        """Void a pending withdrawal: its money is available again. A
        completed one raises (RZ_EPOSTED)."""
        tid = parse_id(id) if id is not None else new_id()
        self._op("rz_ledger_withdraw_cancel", "withdraw cancel", _cid(tid),
                 _cid(request))
        return tid

    # -- escrow -----------------------------------------------------------
    def hold(self, job: LedgerId, client: LedgerId, micros: int, *, timeout: int = 0,
             id: Optional[LedgerId] = None) -> int:
        """Reserve up to `micros` of the client's money for a job (into
        escrow, pending). InsufficientFunds if it has less available."""
        tid = parse_id(id) if id is not None else new_id()
        self._op("rz_ledger_hold", "hold", _cid(tid), _cid(job), _cid(client),
                 _micros(micros), _micros(timeout))
        return tid

    def settle(self, job: LedgerId, node: LedgerId, micros: int, *,
               id: Optional[LedgerId] = None) -> Tuple[int, int]:
        """Charge the actual cost (<= the hold) of a job: the node is paid
        the cost minus the platform fee, the rest of the hold goes back.
        Returns (payout, fee) in micros."""
        tid = parse_id(id) if id is not None else new_id()
        res = RzLedgerResult()
        self._op("rz_ledger_settle", "settle", _cid(tid), _cid(job), _cid(node),
                 _micros(micros), byref(res))
        return res.amount, res.fee

    def refund(self, job: LedgerId, *, id: Optional[LedgerId] = None) -> int:
        """Void a job's hold; returns the micros released to the client."""
        tid = parse_id(id) if id is not None else new_id()
        res = RzLedgerResult()
        self._op("rz_ledger_refund", "refund", _cid(tid), _cid(job), byref(res))
        return int(res.amount)

    def tick(self, now: int) -> int:
        """Expire pending transfers whose timeout <= now; returns how many."""
        n = c_uint64()
        self._op("rz_ledger_tick", "tick", _micros(now), byref(n))
        return n.value

    # -- whole-ledger -----------------------------------------------------
    def verify(self) -> bool:
        """Check every invariant; True, or ValidationError naming the first breach."""
        self._op("rz_ledger_verify", "verify")
        return True

    def stats(self) -> Dict[str, int]:
        with self._use() as h:
            s = RzLedgerStats()
            errors.check(lib.rz_ledger_stats_get(h, byref(s)))
            return {n: getattr(s, n) for n, _ in RzLedgerStats._fields_}

    def export(self) -> Dict[str, Any]:
        """Every account and transfer: {"accounts": [...], "transfers": [...]}."""
        with self._use() as h:
            out = c_void_p()
            errors.check(lib.rz_ledger_export(h, 1, byref(out)))
            return json_object(take_string(out))

    def checkpoint(self) -> None:
        self._op("rz_ledger_checkpoint", "checkpoint")

    def fee(self, micros: int) -> int:
        """The platform fee of an actual cost under this ledger's fee_bps."""
        return int(lib.rz_ledger_fee(_micros(micros), self.fee_bps))
