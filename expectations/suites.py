"""The expectation suites, built in code: the input partition, connection_success and the two
summary tables (domain_daily, proxy_coverage).

Every expectation has a stable id (used in config overrides, the manifest and error messages)
and a severity: `critical` blocks publishing, `warning` is only reported. Thresholds come from
config; the defaults suit the sample lake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from proxylink.transforms import aggregates as a
from proxylink.transforms import schema as s

Severity = Literal["critical", "warning"]
# The job's own host-name rule (`transforms.schema`), with the DNS length limit as a lookahead
# for great-expectations' Python regular expressions: the check guards the normalisation.
HOSTNAME = rf"^(?=.{{1,{s.MAX_HOST_NAME_BYTES}}}$){s.HOST_NAME_PATTERN.removeprefix('^')}"

INPUT_SUITE = "input"
CURATED_SUITE = "connection_success"
DOMAIN_SUITE = a.DOMAIN_DAILY_TABLE
COVERAGE_SUITE = a.PROXY_COVERAGE_TABLE
SUITES = (INPUT_SUITE, CURATED_SUITE, DOMAIN_SUITE, COVERAGE_SUITE)


@dataclass(frozen=True)
class InputThresholds:
    """Largest share of one file's rows that may break each input rule (they are quarantined
    either way; above the threshold the day is suspect and is not published)."""

    max_null_key_rate: float = 0.01
    max_bad_value_rate: float = 0.01
    max_bad_port_rate: float = 0.01
    max_outside_partition_rate: float = 0.01
    max_bad_host_name_rate: float = 0.01


@dataclass(frozen=True)
class CuratedThresholds:
    min_link_rate: float = 0.95  # linked share of legs on devices that show evidence


@dataclass(frozen=True)
class CoverageThresholds:
    max_blind_share: float = 0.5  # of the devices with proxy legs (warning)


@dataclass(frozen=True)
class SuiteSettings:
    """Everything the suites depend on for one day."""

    day_start: datetime
    day_last: datetime  # the last microsecond of the day
    tolerance_ms: int
    input: InputThresholds = InputThresholds()
    curated: CuratedThresholds = CuratedThresholds()
    coverage: CoverageThresholds = CoverageThresholds()
    severity: Mapping[str, Severity] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One expectation of a suite: its id, what it means, its severity and how to build it."""

    id: str
    description: str
    severity: Severity
    build: Callable[[Any, SuiteSettings], Any]  # (gx.expectations module, settings) -> Expectation


# Each input rule as data: its id, what it means, the profile column (a share of one file's
# rows) and the threshold setting that bounds it. The gate names the files above the bound.
INPUT_RATES: tuple[tuple[str, str, str, str], ...] = (
    (
        "input.keys_not_null",
        "DeviceId, Timestamp and ReportId are present",
        "null_key_rate",
        "max_null_key_rate",
    ),
    (
        "input.types_castable",
        "values parse to the contract types",
        "bad_value_rate",
        "max_bad_value_rate",
    ),
    (
        "input.ports_in_range",
        "RemotePort and LocalPort are integers in 0..65535",
        "bad_port_rate",
        "max_bad_port_rate",
    ),
    (
        "input.timestamp_in_partition",
        "Timestamp lies in its partition's date and hour, give or take the clock skew",
        "outside_partition_rate",
        "max_outside_partition_rate",
    ),
    (
        "input.host_names_valid",
        "a destination name (RemoteUrl, Host, SNI) is a host name once normalised; the "
        "others are kept out of RemoteUrl either way (RemoteUrlRaw keeps the row's own)",
        "bad_host_name_rate",
        "max_bad_host_name_rate",
    ),
)


def input_limit(settings: SuiteSettings, threshold: str) -> float:
    """The configured bound of one input rule's rate."""
    return float(getattr(settings.input, threshold))


def _input_checks() -> list[Check]:
    def rate(column: str, threshold: str) -> Callable[[Any, Any], Any]:
        return lambda E, cfg: E.ExpectColumnValuesToBeBetween(
            column=column, min_value=0, max_value=input_limit(cfg, threshold)
        )

    return [
        *(
            Check(check_id, description, "critical", rate(column, threshold))
            for check_id, description, column, threshold in INPUT_RATES
        ),
        Check(
            "input.known_action_types",
            "ActionType is one Defender documents (unknown ones are still carried)",
            "warning",
            lambda E, cfg: E.ExpectColumnValuesToBeNull(column="unknown_action_types"),
        ),
    ]


def _curated_checks() -> list[Check]:
    return [
        Check(
            "connection_success.key_unique",
            "(DeviceId, Timestamp, ReportId) is unique",
            "critical",
            lambda E, cfg: E.ExpectColumnValuesToBeBetween(
                column="duplicate_key_rows", min_value=0, max_value=0
            ),
        ),
        Check(
            "connection_success.only_connection_success",
            "ActionType is only ConnectionSuccess",
            "critical",
            lambda E, cfg: E.ExpectColumnValuesToBeInSet(
                column=s.ACTION_TYPE, value_set=[s.CONNECTION_SUCCESS]
            ),
        ),
        Check(
            "connection_success.timestamp_from",
            "no Timestamp before day D",
            "critical",
            lambda E, cfg: E.ExpectColumnValuesToBeBetween(
                column="min_timestamp", min_value=cfg.day_start
            ),
        ),
        Check(
            "connection_success.timestamp_to",
            "no Timestamp after day D",
            "critical",
            lambda E, cfg: E.ExpectColumnValuesToBeBetween(
                column="max_timestamp", max_value=cfg.day_last
            ),
        ),
        Check(
            "connection_success.remote_url_hostname",
            "RemoteUrl is a well-formed lower-case host name when present",
            "critical",
            lambda E, cfg: E.ExpectColumnValuesToMatchRegex(column=s.REMOTE_URL, regex=HOSTNAME),
        ),
        Check(
            "connection_success.proxied_rows_carry_proxy",
            "IsProxied rows carry ProxyIP and ProxyPort of a configured proxy",
            "critical",
            lambda E, cfg: E.ExpectColumnValuesToBeInSet(column="proxy_ok", value_set=[True]),
        ),
        Check(
            "connection_success.link_method_in_set",
            "LinkMethod is one of " + ", ".join(s.LINK_METHODS),
            "critical",
            lambda E, cfg: E.ExpectColumnValuesToBeInSet(
                column=s.LINK_METHOD, value_set=list(s.LINK_METHODS)
            ),
        ),
        Check(
            "connection_success.link_delta_within_tolerance",
            "|LinkDeltaMs| is within the link tolerance",
            "critical",
            lambda E, cfg: E.ExpectColumnValuesToBeBetween(
                column="max_abs_link_delta_ms", min_value=0, max_value=cfg.tolerance_ms
            ),
        ),
        Check(
            "connection_success.link_rate_floor",
            "legs on devices that show evidence are linked at least at the configured rate",
            "warning",
            lambda E, cfg: E.ExpectColumnMinToBeBetween(
                column="link_rate_devices_with_evidence", min_value=cfg.curated.min_link_rate
            ),
        ),
        Check(
            "connection_success.rows_match_counts",
            "the staged rows are the connections counted: legs + direct + evidence only",
            "critical",
            lambda E, cfg: E.ExpectColumnPairValuesToBeEqual(
                column_A="staged_rows", column_B="legs_direct_evidence_only"
            ),
        ),
        Check(
            "connection_success.counts_reconcile",
            "rows read for the day = curated + rejected + filtered by rule",
            "critical",
            lambda E, cfg: E.ExpectColumnPairValuesToBeEqual(
                column_A="rows_in_day", column_B="accounted_rows"
            ),
        ),
    ]


def _pair_equal(a_col: str, b_col: str) -> Callable[[Any, SuiteSettings], Any]:
    return lambda E, cfg: E.ExpectColumnPairValuesToBeEqual(column_A=a_col, column_B=b_col)


def _all_true(column: str) -> Callable[[Any, SuiteSettings], Any]:
    return lambda E, cfg: E.ExpectColumnValuesToBeInSet(column=column, value_set=[True])


def _domain_checks() -> list[Check]:
    return [
        Check(
            "domain_daily.remote_url_unique",
            "one row per RemoteUrl, never null",
            "critical",
            _all_true("key_ok"),
        ),
        Check(
            "domain_daily.remote_url_hostname",
            "RemoteUrl is a well-formed lower-case host name",
            "critical",
            _all_true("hostname_ok"),
        ),
        Check(
            "domain_daily.registered_domain_is_suffix",
            "RegisteredDomain is RemoteUrl itself or a dot-separated suffix of it",
            "critical",
            _all_true("registered_ok"),
        ),
        Check(
            "domain_daily.counts_consistent",
            "1 <= Devices <= Connections, ProxiedConnections <= Connections, ProxiedShare = "
            "ProxiedConnections / Connections",
            "critical",
            _all_true("counts_ok"),
        ),
        Check(
            "domain_daily.seen_within_day",
            "FirstSeen <= LastSeen, both within day D",
            "critical",
            _all_true("seen_ok"),
        ),
        Check(
            "domain_daily.connections_match_curated",
            "Connections add up to the curated rows that name a RemoteUrl",
            "critical",
            _pair_equal("sum_connections", "curated_rows_with_url"),
        ),
    ]


def _coverage_checks() -> list[Check]:
    return [
        Check(
            "proxy_coverage.device_unique",
            "one row per DeviceId, never null",
            "critical",
            _all_true("key_ok"),
        ),
        Check(
            "proxy_coverage.legs_add_up",
            "ProxyLegs = LinkedSocket + LinkedProcess + Unlinked, and LinkRate is their linked "
            "share",
            "critical",
            _all_true("legs_ok"),
        ),
        Check(
            "proxy_coverage.status_follows_evidence",
            "Status is protected with evidence, blind with proxy legs and no evidence, "
            "direct-only otherwise",
            "critical",
            _all_true("status_ok"),
        ),
        Check(
            "proxy_coverage.connections_match_curated",
            "Connections add up to the curated rows, ProxyLegs to the legs",
            "critical",
            _all_true("totals_ok"),
        ),
        Check(
            "proxy_coverage.blind_share",
            "at most the configured share of devices with proxy legs is blind",
            "warning",
            lambda E, cfg: E.ExpectColumnMaxToBeBetween(
                column="blind_share", max_value=cfg.coverage.max_blind_share
            ),
        ),
    ]


CHECKS: dict[str, list[Check]] = {
    INPUT_SUITE: _input_checks(),
    CURATED_SUITE: _curated_checks(),
    DOMAIN_SUITE: _domain_checks(),
    COVERAGE_SUITE: _coverage_checks(),
}
CHECK_IDS = tuple(c.id for checks in CHECKS.values() for c in checks)


def severity_of(check: Check, settings: SuiteSettings) -> Severity:
    return settings.severity.get(check.id, check.severity)
