"""The link rules as data: row roles, what evidence each role gives and which one wins, and the
fates a row can meet. Defined once, here; the link core (`polars_engine`) holds only how they
are evaluated, and the expectations and the docs read them from here.

The reject reasons and the host-name rule are part of the data contracts and live in
`transforms.schema`; the column types are in `transforms.types`.
"""

from __future__ import annotations

from typing import Final

from proxylink.transforms import schema as s

# Row roles. A `leg` is a ConnectionSuccess to a proxy. `np` is a network-protection row
# (ConnectionSuccess with RemoteUrl) on the proxy socket; `np2` one whose socket shows the real
# target: evidence if it matches a leg on its socket or process, a direct connection otherwise.
# `http` is a CONNECT through the proxy; `req` a plain-HTTP request through it (GET, POST, ...),
# not tunnelled, whose Host header or absolute URI names the target; `ssl` a TLS ClientHello's
# server name. `direct` is a connection that does not use the proxy; `other` everything else.
LEG: Final = "leg"
NP: Final = "np"
NP2: Final = "np2"
HTTP: Final = "http"
REQ: Final = "req"
SSL: Final = "ssl"
DIRECT: Final = "direct"
OTHER: Final = "other"
ROLES: Final = (LEG, NP, NP2, HTTP, REQ, SSL, DIRECT, OTHER)

EVIDENCE_ROLES: Final = (NP, NP2, HTTP, REQ, SSL)
INSPECTION_ROLES: Final = (HTTP, REQ, SSL)
# The ActionType each evidence role comes from (the curated row's EvidenceSource).
ROLE_SOURCE: Final = {
    NP: s.CONNECTION_SUCCESS,
    NP2: s.CONNECTION_SUCCESS,
    HTTP: s.HTTP_INSPECTED,
    REQ: s.HTTP_INSPECTED,
    SSL: s.SSL_INSPECTED,
}
# Which evidence names a linked leg's domain when several do (they agree, or it stays
# unlinked): lower wins. Network protection names the domain the user asked for; the CONNECT
# Host header next; the TLS server name; a plain request's Host last.
EVIDENCE_PRIORITY: Final = {NP: 0, NP2: 0, HTTP: 1, SSL: 2, REQ: 3}

# The fates: every row of day D meets exactly one, and the counts of the fates add up to the
# rows read (the manifest's reconciliation). `ok` is a row not decided yet: valid and unique.
CURATED: Final = "curated"
REJECTED: Final = "rejected"
DUPLICATE: Final = "duplicate"
FOLDED: Final = "evidence_folded"
UNMATCHED: Final = "inspection_unmatched"
NOT_CONNECTION: Final = "not_connection"
OK: Final = "ok"
FATES: Final = (CURATED, REJECTED, DUPLICATE, FOLDED, UNMATCHED, NOT_CONNECTION)
