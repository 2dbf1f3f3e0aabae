"""Split normalised rows into legs, evidence, direct connections and the rest (polars rules).

The polars engine replaces strings by integer codes to keep its one eager frame small; Spark
keeps the strings (`DeviceId`, `RemoteIP`, the domain), which compare the same way.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from transforms import schema as s
from transforms.params import LinkParams, ProxyMatch, ProxyRule
from transforms.polars_engine.classify import (
    DIRECT,
    DOMAIN,
    EVIDENCE_ROLES,
    HTTP,
    LEG,
    NP,
    NP2,
    OTHER,
    ROLE,
    SSL,
    TARGET_PORT,
    TO_PROXY,
)
from transforms.polars_engine.normalise import (
    AF_HOST,
    AF_METHOD,
    AF_SERVER_NAME,
    AF_URI,
    FILE,
    HOME_DAY,
    REJECT,
    ROW,
)
from transforms.spark_engine.text import extract, strip

__all__ = [
    "DIRECT",
    "DOMAIN",
    "EVIDENCE_ROLES",
    "HTTP",
    "LEG",
    "NARROW_COLUMNS",
    "NP",
    "NP2",
    "OTHER",
    "ROLE",
    "ROLE_ORDER",
    "SSL",
    "TARGET_PORT",
    "classify",
]

# The order of the polars Enum of roles, for the content order that picks a row among clashes.
ROLE_ORDER = {r: i for i, r in enumerate([LEG, NP, NP2, HTTP, SSL, DIRECT, OTHER])}

NARROW_COLUMNS = (
    FILE,
    ROW,
    HOME_DAY,
    REJECT,
    s.DEVICE_ID,
    s.TIMESTAMP,
    s.REPORT_ID,
    s.REMOTE_IP,
    s.REMOTE_PORT,
    s.LOCAL_PORT,
    s.PROCESS_ID,
    s.PROCESS_CREATION,
    ROLE,
    DOMAIN,
    TARGET_PORT,
)

_CLEAN_DOMAIN = r"^[a-z0-9_]([a-z0-9_.\-]*[a-z0-9_])?\z"


def normalise_domain(source: Column) -> Column:
    """A host name as analysts compare it: lower case, no scheme, path, user or port."""
    messy = F.when(~source.rlike(_CLEAN_DOMAIN), source)
    e = F.lower(strip(messy))
    e = F.regexp_replace(e, r"^[a-z][a-z0-9+.\-]*://", "")
    e = F.regexp_replace(e, r"(?d)[/?#].*\z", "")
    e = F.regexp_replace(e, r"^[^@]*@", "")
    e = F.regexp_replace(e, r":[0-9]*\z", "")
    e = F.regexp_replace(e, r"\.+\z", "")
    return F.when(messy.isNull(), source).when(e != "", e)


def normalise_ip(ip: Column) -> Column:
    """IPv4-mapped IPv6 (`::ffff:10.0.0.1`) is the IPv4 address for proxy matching."""
    return F.regexp_replace(F.lower(strip(ip)), r"^::ffff:", "")


def _ipv4_int(ip: Column) -> Column:
    parts = F.split(ip, r"\.", 4)
    octets = [
        F.when(F.get(parts, i).rlike(r"^[+-]?[0-9]+\z"), F.get(parts, i).try_cast("bigint"))
        for i in range(4)
    ]
    value = ((octets[0] * 256 + octets[1]) * 256 + octets[2]) * 256 + octets[3]
    in_range: Column = F.lit(True)
    for o in octets:
        in_range = in_range & (o >= 0) & (o <= 255)
    return F.when(in_range, value)


def proxy_match(ip: Column, port: Column, proxies: tuple[ProxyRule, ...]) -> Column:
    """True where (ip, port) is a configured proxy; never null."""
    plan = ProxyMatch.of(proxies)
    conds: list[Column] = []
    if plan.any_port:
        conds.append(ip.isin(list(plan.any_port)))
    for texts, rule_port in plan.with_port:
        conds.append(ip.isin(list(texts)) & (port == rule_port))
    if plan.ranges:
        as_int = _ipv4_int(normalise_ip(ip))
        for lo, hi, range_port in plan.ranges:
            cond = as_int.between(lo, hi)
            conds.append(cond if range_port is None else cond & (port == range_port))
    if not conds:
        return F.lit(False)
    matched = conds[0]
    for cond in conds[1:]:
        matched = matched | cond
    return F.coalesce(matched, F.lit(False))


def classify(typed: DataFrame, params: LinkParams) -> DataFrame:
    """Narrow frame with each row's role, destination domain and target port."""
    action = F.col(s.ACTION_TYPE)
    is_connect = F.upper(F.col(AF_METHOD)) == "CONNECT"
    http_host, http_uri = F.col(AF_HOST), F.col(AF_URI)
    named = F.coalesce(
        F.when(action == s.CONNECTION_SUCCESS, F.col(s.REMOTE_URL)),
        F.when(is_connect, F.coalesce(http_host, http_uri)),
        F.col(AF_SERVER_NAME),
    )
    port_text = F.coalesce(
        extract(http_uri, r":([0-9]{1,5})\z"), extract(http_host, r":([0-9]{1,5})\z")
    )
    target_port = F.when((action == s.HTTP_INSPECTED) & is_connect, port_text.try_cast("int")).when(
        action == s.CONNECTION_SUCCESS, F.col(s.REMOTE_PORT)
    )
    frame = typed.withColumns(
        {
            TARGET_PORT: target_port,
            TO_PROXY: proxy_match(F.col(s.REMOTE_IP), F.col(s.REMOTE_PORT), params.proxies),
            DOMAIN: normalise_domain(named),
        }
    )
    has_domain = F.col(DOMAIN).isNotNull()
    proxied = F.col(TO_PROXY)
    has_process = F.coalesce(F.col(s.PROCESS_ID), F.lit(0)) != 0
    success = action == s.CONNECTION_SUCCESS
    role = (
        F.when(success & proxied & ~has_domain, F.lit(LEG))
        .when(success & proxied, F.lit(NP))
        .when(success & has_domain & has_process & F.col(s.LOCAL_PORT).isNotNull(), F.lit(NP2))
        .when(success, F.lit(DIRECT))
        .when((action == s.HTTP_INSPECTED) & proxied & has_domain, F.lit(HTTP))
        .when((action == s.SSL_INSPECTED) & proxied & has_domain, F.lit(SSL))
        .otherwise(F.lit(OTHER))
    )
    return frame.withColumn(ROLE, role).select(*NARROW_COLUMNS)
