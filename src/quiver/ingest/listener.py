"""What every listening receiver (OTLP/gRPC, OTLP/HTTP and OTAP, WebSocket) checks the same way:
whether its endpoint can be bound, and whether the PEM files it serves TLS with can be read.

A port that cannot be bound is reported with the endpoint and the system's reason and its
errno name (``Address already in use (EADDRINUSE)``), with a fix for that reason, before gRPC
or uvicorn try it: gRPC says no more than "Failed to bind" whatever the reason.

A TLS file is checked for what the TLS libraries report opaquely (``[SSL] PEM lib``, gRPC's
``Invalid cert chain file``): that it exists and can be read, holds a PEM block of the right
kind, and that the certificate chain, key and CA bundle load together.
"""

from __future__ import annotations

import ssl

from quiver.runtime.errors import PermanentError, QuiverError
from quiver.runtime.listen import BindProblem, bind_problem, open_listener, problem_of

__all__ = [
    "BindProblem",
    "bind_problem",
    "listen_error",
    "open_listener",
    "problem_of",
    "tls_file_problems",
]


def listen_error(receiver: str, endpoint: str, problem: BindProblem, where: str) -> QuiverError:
    """The run's error for a receiver that cannot listen: one line with the endpoint and the
    reason, and the fix."""
    return PermanentError.one(
        f"the {receiver} receiver cannot listen on {endpoint}: {problem.reason}",
        where,
        problem.fix,
    )


#: The PEM block each kind of TLS file must hold (a key may be PKCS#8, RSA or EC).
_PEM_LABELS = {
    "certificate": ("CERTIFICATE",),
    "private key": ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"),
    "CA bundle": ("CERTIFICATE",),
}


def _read_problem(path: str, kind: str) -> str | None:
    """What keeps ``path`` from being a PEM file of ``kind``, or None."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(1 << 22)
    except FileNotFoundError:
        return f"file not found: {path}"
    except IsADirectoryError:
        return f"{path} is a directory, not a PEM file"
    except PermissionError:
        return f"cannot read {path}: permission denied"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    text = data.decode("ascii", "replace")
    labels = _PEM_LABELS[kind]
    if kind == "private key" and ("ENCRYPTED PRIVATE KEY" in text or "4,ENCRYPTED" in text):
        return (
            f"{path} is encrypted with a passphrase, which a receiver cannot be given: "
            "decrypt it (openssl pkey -in FILE -out FILE.plain)"
        )
    if any(f"-----BEGIN {label}-----" in text for label in labels):
        return None
    if "-----BEGIN " in text:
        found = text.split("-----BEGIN ", 1)[1].split("-----", 1)[0]
        return f"{path} holds a PEM {found!r} block, not a {kind}"
    if not data.strip():
        return f"{path} is empty; it must hold a PEM {kind}"
    der = data[:1] == b"0"  # an ASN.1 SEQUENCE: DER, the binary form of the same
    hint = " (DER? convert it: openssl x509 -inform der -in FILE -out FILE.pem)" if der else ""
    return f"{path} is not PEM: no '-----BEGIN {labels[0]}-----' line{hint}"


def _ssl_reason(exc: ssl.SSLError) -> str:
    reason = getattr(exc, "reason", None)
    if reason == "KEY_VALUES_MISMATCH":
        return "the private key does not belong to the certificate"
    return str(reason or exc.strerror or exc).replace("_", " ").lower()


def _no_passphrase() -> str:
    return ""  # an encrypted key then fails to load, rather than prompting on the terminal


def tls_file_problems(
    cert_file: str | None, key_file: str | None, ca_file: str | None
) -> list[tuple[str, str]]:
    """``(option, problem)`` for each of a listener's TLS files that cannot serve: missing,
    unreadable, not PEM of its kind, or not loading (a key of another certificate, a corrupt
    block). ``option`` is ``cert_file``, ``key_file`` or ``client_ca_file``; paths are given
    resolved."""
    problems: list[tuple[str, str]] = []
    for option, path, kind in (
        ("cert_file", cert_file, "certificate"),
        ("key_file", key_file, "private key"),
        ("client_ca_file", ca_file, "CA bundle"),
    ):
        if path is not None and (problem := _read_problem(path, kind)) is not None:
            problems.append((option, problem))
    if problems:
        return problems
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if cert_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file, password=_no_passphrase)
        except ssl.SSLError as exc:
            option = (
                "key_file" if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH" else "cert_file"
            )
            files = f"{cert_file} and {key_file} do" if key_file else f"{cert_file} does"
            problems.append((option, f"{files} not load: {_ssl_reason(exc)}"))
    if ca_file is not None:
        try:
            context.load_verify_locations(ca_file)
        except ssl.SSLError as exc:
            problems.append(("client_ca_file", f"{ca_file} does not load: {_ssl_reason(exc)}"))
    return problems
