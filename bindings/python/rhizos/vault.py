"""The credential vault (rz_vault): secrets encrypted at rest.

Values go in as str or bytes and come out as bytes (reveal) or str (get).
Decrypted values are copied out of the library's guarded memory into a
Python object, which Python cannot wipe: keep them no longer than needed.
Nothing here logs or formats a value or the password (repr shows names).
"""
from __future__ import annotations

import ctypes
import json
import os
from ctypes import byref, c_void_p
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from . import errors
from ._lib import (Handle, RzVaultEntry, RzVaultOpts, dec, enc, lib,
                   json_object, take_string)

Secret = Union[str, bytes, bytearray, memoryview]
_KDFS = {"moderate": 0, "interactive": 1, "sensitive": 2}
_NOT_FOUND = (1 << 64) - 1


@dataclass(frozen=True)
class VaultEntry:
    """An entry's public part (never the value)."""
    id: str
    name: str
    type: str
    created_ms: int
    updated_ms: int
    metadata: Dict[str, Any]
    value_len: int


def _secret(value: Secret) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("a secret is str or bytes")


def _opts(kdf: Union[str, Tuple[int, int]]) -> RzVaultOpts:
    o = RzVaultOpts(1, 0, 0, 0, 0, 0)
    if isinstance(kdf, tuple):
        o.kdf, o.opslimit, o.memlimit = 3, int(kdf[0]), int(kdf[1])
    elif kdf in _KDFS:
        o.kdf = _KDFS[kdf]
    else:
        raise errors.InvalidArgument("kdf is 'interactive', 'moderate', 'sensitive' "
                                     "or (opslimit, memlimit)", code="RZ_EINVAL")
    return o


class Vault(Handle):
    """A vault file, unlocked with `password`.

    Vault(path, password) opens an existing vault (AuthError for a wrong
    password) or, when the file is missing and `create` is not False,
    creates one (`kdf` sets the password-hash cost: "moderate" by default,
    "interactive" for tests). Changes are written to the file at once
    unless autosave=False (then call save()).
    """
    _free_fn, _what = "rz_vault_close", "Vault"

    def __init__(self, path: Union[str, "os.PathLike[str]"], password: Secret, *,
                 create: Optional[bool] = None,
                 kdf: Union[str, Tuple[int, int]] = "moderate",
                 autosave: bool = True) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.autosave = autosave
        pw = _secret(password)
        exists = os.path.exists(self.path)
        if create is True or (create is None and not exists):
            opts = _opts(kdf)
            errors.check(lib.rz_vault_create(byref(self._h), enc(self.path), pw,
                                             len(pw), byref(opts)), self.path)
            return
        errors.check(lib.rz_vault_open(byref(self._h), enc(self.path), None), self.path)
        rc = lib.rz_vault_unlock(self._h, pw, len(pw))
        if rc < 0:
            err = errors.from_status(rc, context=self.path)
            self.close()
            raise err

    def __repr__(self) -> str:
        if self.closed:
            return "<rhizos.Vault (closed)>"
        return "<rhizos.Vault %r: %d entries>" % (self.path, len(self))

    def __len__(self) -> int:
        with self._use() as h:
            return int(lib.rz_vault_count(h))

    def _index(self, h: c_void_p, id_or_name: str) -> int:
        i = int(lib.rz_vault_find(h, enc(id_or_name)))
        if i == _NOT_FOUND:
            raise errors.NotFound("no vault entry %r" % id_or_name, code="RZ_ENOENT")
        return i

    def _autosave(self, h: c_void_p) -> None:
        if self.autosave:
            errors.check(lib.rz_vault_save(h), "saving " + self.path)

    def add(self, name: str, type: str, value: Secret,
            metadata: Optional[Mapping[str, Any]] = None) -> str:
        """Add an entry (AlreadyExists if the name is taken); returns its id."""
        v = _secret(value)
        meta = enc(json.dumps(dict(metadata))) if metadata is not None else None
        idbuf = ctypes.create_string_buffer(33)
        with self._use() as h:
            errors.check(lib.rz_vault_add(h, enc(name), enc(type), meta, v, len(v), idbuf),
                         "vault add %s" % name)
            self._autosave(h)
        return idbuf.value.decode()

    def update(self, id_or_name: str, value: Secret,
               metadata: Optional[Mapping[str, Any]] = None) -> None:
        v = _secret(value)
        meta = enc(json.dumps(dict(metadata))) if metadata is not None else None
        with self._use() as h:
            errors.check(lib.rz_vault_update(h, enc(id_or_name), meta, v, len(v)),
                         "vault update %s" % id_or_name)
            self._autosave(h)

    def remove(self, id_or_name: str) -> None:
        with self._use() as h:
            errors.check(lib.rz_vault_remove(h, enc(id_or_name)),
                         "vault remove %s" % id_or_name)
            self._autosave(h)

    def list(self) -> List[VaultEntry]:
        """Every entry in insertion order, without values."""
        with self._use() as h:
            out = []
            for i in range(lib.rz_vault_count(h)):
                e = RzVaultEntry()
                errors.check(lib.rz_vault_get(h, i, byref(e)))
                out.append(VaultEntry(dec(e.id), dec(e.name), dec(e.type), e.created_ms,
                                      e.updated_ms, json.loads(dec(e.metadata) or "{}"),
                                      e.value_len))
            return out

    def __contains__(self, id_or_name: str) -> bool:
        with self._use() as h:
            return int(lib.rz_vault_find(h, enc(id_or_name))) != _NOT_FOUND

    def reveal(self, id_or_name: str) -> bytes:
        """The decrypted value as bytes."""
        with self._use() as h:
            i = self._index(h, id_or_name)
            s = c_void_p()
            errors.check(lib.rz_vault_reveal(h, i, byref(s)), "vault reveal %s" % id_or_name)
            try:
                return ctypes.string_at(lib.rz_secret_data(s), lib.rz_secret_len(s))
            finally:
                lib.rz_secret_free(s)

    def get(self, id_or_name: str, encoding: str = "utf-8") -> str:
        """The decrypted value as text."""
        return self.reveal(id_or_name).decode(encoding)

    def seal_flow(self, flow: Any, public_key: Union[bytes, str],
                  expires_ms: int = 0) -> Dict[str, str]:
        """The credentials `flow` (a rhizos.Flow) references, sealed to an
        orchestrator's X25519 key (32 bytes, or the 64 hex digits of its GET
        /api/v1/keys): {credentialId: base64 box}, the "credentials" of a
        deployment (rz_vault_seal_flow). Each box expires at `expires_ms`
        (ms since the epoch; 0: in an hour). NotFound names a credential
        the vault lacks."""
        pk = bytes.fromhex(public_key) if isinstance(public_key, str) else bytes(public_key)
        if len(pk) != 32:
            raise errors.InvalidArgument("an X25519 public key is 32 bytes",
                                         code="RZ_EINVAL")
        out = c_void_p()
        with self._use() as h, flow._use() as fh:
            rc = lib.rz_vault_seal_flow(byref(out), h, fh, pk, int(expires_ms))
            text = take_string(out)
        errors.check(rc, "sealing the flow's credentials")
        return {str(k): str(v) for k, v in json_object(text).items()}

    def save(self) -> None:
        with self._use() as h:
            errors.check(lib.rz_vault_save(h), "saving " + self.path)

    def passwd(self, new_password: Secret,
               kdf: Optional[Union[str, Tuple[int, int]]] = None) -> None:
        """Change the master password (re-encrypts and writes the file)."""
        pw = _secret(new_password)
        opts = _opts(kdf) if kdf is not None else None
        with self._use() as h:
            errors.check(lib.rz_vault_passwd(h, pw, len(pw),
                                             byref(opts) if opts else None), "passwd")
