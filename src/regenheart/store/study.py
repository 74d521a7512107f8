"""Which protocol a study database belongs to.

``regenheart db init --protocol FILE`` stores the protocol text (and its SHA-256) in the database's
study meta, so every later command (serve, import, export, analyze, audit verify) works on the
study's own definition without being told again. A database made without ``--protocol`` belongs
to the embedded RegenHeart definition. The protocol version a database was created under (e.g. the
randomized 1.0 of the demo) is recorded too, and becomes the active version.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlalchemy import Engine

from regenheart.protocol import load_protocol
from regenheart.protocol.loader import ProtocolError, ProtocolIssue, parse_protocol
from regenheart.protocol.models import Protocol
from regenheart.store.db import read_meta

PROTOCOL_TEXT_KEY = "protocol_yaml"        # study_meta: the protocol text of 'db init --protocol'
PROTOCOL_SHA256_KEY = "protocol_sha256"
PROTOCOL_VERSION_KEY = "protocol_version"  # study_meta: the protocol version the database was created under


def with_active_version(protocol: Protocol, version: str | None) -> Protocol:
    """``protocol`` with ``version`` as its active protocol version (None: unchanged).

    Raises :class:`ProtocolError` naming the versions the protocol has.
    """
    if version is None or version == protocol.active_protocol_version:
        return protocol
    versions = [v.version for v in protocol.protocol_versions]
    if version not in versions:
        raise ProtocolError("--protocol-version", [ProtocolIssue("protocol_versions", f"no version '{version}'; "
                                                                 f"the protocol has {', '.join(versions)}")])
    return protocol.model_copy(update={"active_protocol_version": version})


def stored_protocol(engine: Engine) -> Protocol | None:
    """The protocol stored in the database by ``db init --protocol`` (None when it carries none)."""
    text = read_meta(engine).get(PROTOCOL_TEXT_KEY)
    if not text:
        return None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProtocolError("protocol stored in the study database",
                            [ProtocolIssue("(file)", f"not valid YAML: {exc}")]) from None
    return parse_protocol(document, "protocol stored in the study database")


def study_protocol(engine: Engine | None, protocol_file: str | Path | None = None) -> Protocol:
    """The protocol to work with: ``protocol_file`` if given, else the database's own, else RegenHeart's.

    The protocol version the database was created under becomes the active one when the protocol has it.
    """
    if protocol_file is not None:
        protocol = load_protocol(protocol_file)
    else:
        protocol = (stored_protocol(engine) if engine is not None else None) or load_protocol()
    if engine is None:
        return protocol
    recorded = read_meta(engine).get(PROTOCOL_VERSION_KEY)
    if recorded and recorded in {v.version for v in protocol.protocol_versions}:
        protocol = with_active_version(protocol, recorded)
    return protocol
