"""Shared test fixtures: paths into the source tree."""
import os

ROOT = os.environ.get("RZ_SOURCE_ROOT") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
EXAMPLES = os.path.join(ROOT, "examples")
FLOWS = os.path.join(EXAMPLES, "flows")
MODULES = os.path.join(EXAMPLES, "modules")
DATA = os.path.join(ROOT, "tests", "data")


def flow_path(name):
    return os.path.join(FLOWS, name)


def node_keypair():
    """A fresh X25519 key pair (pk, sk) from the library, as bytes."""
    import ctypes
    from rhizos._lib import lib
    pk, sk = (ctypes.c_ubyte * 32)(), (ctypes.c_ubyte * 32)()
    if lib.rz_vault_node_keypair(pk, sk) != 0:
        raise RuntimeError("rz_vault_node_keypair failed")
    return bytes(pk), bytes(sk)


def unseal(box, pk, sk, job_id=b"orchestrator"):
    """Open a sealed credential as its recipient would: (value, credential id)."""
    import ctypes
    from rhizos._lib import lib
    lib.rz_secret_data.restype = ctypes.c_void_p
    lib.rz_secret_len.restype = ctypes.c_size_t
    lib.rz_secret_data.argtypes = lib.rz_secret_len.argtypes = [ctypes.c_void_p]
    lib.rz_secret_free.argtypes = [ctypes.c_void_p]
    secret, cid = ctypes.c_void_p(), ctypes.c_void_p()
    rc = lib.rz_vault_unseal(ctypes.byref(secret), ctypes.byref(cid), box,
                             ctypes.c_size_t(len(box)), pk, sk, job_id,
                             ctypes.c_uint64(0))
    if rc != 0:
        raise RuntimeError("rz_vault_unseal: %d" % rc)
    value = ctypes.string_at(lib.rz_secret_data(secret), lib.rz_secret_len(secret))
    lib.rz_secret_free(secret)
    ident = ctypes.string_at(cid.value).decode()
    lib.rz_free(cid)
    return value, ident
