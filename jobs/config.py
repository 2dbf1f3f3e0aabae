"""Typed run configuration: loaded from `conf/*.yaml`, overridden by CLI flags, validated once.

An invalid setting is reported in one line that names the file and the setting.
"""

from __future__ import annotations

import ipaddress
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from proxylink.expectations.suites import (
    CoverageThresholds,
    CuratedThresholds,
    InputThresholds,
    SuiteSettings,
)
from proxylink.jobs.errors import ConfigError
from proxylink.transforms.discover import DiscoveryRules
from proxylink.transforms.params import DayWindow, LinkParams, parse_proxy

log = logging.getLogger(__name__)

AUTO = "auto"  # `proxies: auto`: discover the proxies of each day from its data


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LinkConf(_Strict):
    tolerance_seconds: float = Field(5.0, gt=0, le=3600)


class InputConf(_Strict):
    clock_skew_seconds: float = Field(300.0, ge=0, le=86400)
    on_corrupt_file: Literal["fail", "skip"] = "fail"
    on_invalid_partition: Literal["fail", "skip"] = "fail"


class InputExpectations(_Strict):
    """Largest share of one input file's rows that may break each rule (critical)."""

    max_null_key_rate: float = Field(0.01, ge=0, le=1)
    max_bad_value_rate: float = Field(0.01, ge=0, le=1)
    max_bad_port_rate: float = Field(0.01, ge=0, le=1)
    max_outside_partition_rate: float = Field(0.01, ge=0, le=1)
    max_bad_host_name_rate: float = Field(0.01, ge=0, le=1)


class CuratedExpectations(_Strict):
    min_link_rate: float = Field(0.9, ge=0, le=1)  # warning


class CoverageExpectations(_Strict):
    max_blind_share: float = Field(0.5, ge=0, le=1)  # warning


class ExpectationsConf(_Strict):
    """Thresholds per suite, and severity overrides per expectation id."""

    input: InputExpectations = InputExpectations()
    connection_success: CuratedExpectations = CuratedExpectations()
    proxy_coverage: CoverageExpectations = CoverageExpectations()
    severity: dict[str, Literal["critical", "warning"]] = Field(default_factory=dict)

    @field_validator("severity")
    @classmethod
    def _known_ids(cls, value: dict[str, str]) -> dict[str, str]:
        from proxylink.expectations.suites import CHECK_IDS

        unknown = sorted(set(value) - set(CHECK_IDS))
        if unknown:
            raise ValueError(f"unknown expectation id(s) {', '.join(unknown)}")
        return value

    def settings(self, window: DayWindow, tolerance_ms: int) -> SuiteSettings:
        return SuiteSettings(
            day_start=window.start,
            day_last=window.end - timedelta(microseconds=1),
            tolerance_ms=tolerance_ms,
            input=InputThresholds(**self.input.model_dump()),
            curated=CuratedThresholds(**self.connection_success.model_dump()),
            coverage=CoverageThresholds(**self.proxy_coverage.model_dump()),
            severity=dict(self.severity),
        )


class LockConf(_Strict):
    """What a run does when another run holds the curated root: wait this long, then exit 4."""

    wait_seconds: float = Field(0.0, ge=0, le=86400)


class NightlyConf(_Strict):
    lookback_days: int = Field(0, ge=0, le=366)  # also rebuild the N days before, for late files


class MaintenanceConf(_Strict):
    retention_hours: float = Field(168.0, ge=0)  # vacuum keeps files newer than this
    target_file_mb: int = Field(128, ge=1, le=4096)  # compaction's target file size


class SparkConf(_Strict):
    """The Spark session of `engine: spark`; `options` takes any `spark.*` setting.

    The day's rows are shuffled into device partitions of about `rows_per_task` input rows each
    (at least one per core Spark has, a multiple of them), or exactly `partitions` if set; each
    is linked by one task. Read tasks take at most `rows_per_read_task` rows of one file.
    """

    master: str | None = "local[*]"  # None: let spark-submit decide
    app_name: str = "proxylink"
    options: dict[str, str] = Field(default_factory=dict)
    rows_per_task: int = Field(1_000_000, ge=1_000, le=100_000_000)
    partitions: int | None = Field(None, ge=1, le=100_000)
    rows_per_read_task: int = Field(2_000_000, ge=1_000, le=100_000_000)

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data: Any) -> Any:
        if isinstance(data, dict) and "checkpoint_dir" in data:
            raise ValueError(
                "checkpoint_dir is no longer used (the Spark engine keeps no intermediate "
                "frames since it links with polars inside its tasks): remove it"
            )
        return data

    @field_validator("options")
    @classmethod
    def _spark_keys(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(k for k in value if not k.startswith("spark."))
        if bad:
            raise ValueError(f"not a spark.* setting: {', '.join(bad)}")
        return value


class DiscoveryConf(_Strict):
    """When `discover-proxies` and `proxies: auto` take an IP:port for a proxy (all rules hold)."""

    min_devices: int = Field(10, ge=1)  # distinct devices that reach it
    min_device_share: float = Field(0.02, ge=0, le=1)  # ... and this share of the day's devices
    min_domains: int = Field(20, ge=2)  # distinct domains named by evidence on it, or:
    min_connect_records: int = Field(5, ge=1)  # HTTP inspection records that are CONNECT
    min_connect_share: float = Field(0.5, gt=0, le=1)  # ... and their share of its HTTP records
    ranges: tuple[str, ...] = ()  # CIDRs besides the private ranges where a proxy may live
    near_misses: int = Field(10, ge=0, le=1000)  # rejected candidates to show

    @field_validator("ranges", mode="before")
    @classmethod
    def _range_list(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("ranges")
    @classmethod
    def _valid_ranges(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            try:
                ipaddress.ip_network(text.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{text!r} is not an IP network (CIDR)") from None
        return tuple(v.strip() for v in value)

    def basis(self) -> dict[str, Any]:
        """The settings that decide which proxies qualify (for the input fingerprint)."""
        return self.model_dump(mode="json", exclude={"near_misses"})

    def rules(self) -> DiscoveryRules:
        return DiscoveryRules(
            min_devices=self.min_devices,
            min_device_share=self.min_device_share,
            min_domains=self.min_domains,
            min_connect_records=self.min_connect_records,
            min_connect_share=self.min_connect_share,
            ranges=self.ranges,
        )


class Config(_Strict):
    """Everything a run needs. Relative paths are taken from the working directory."""

    engine: Literal["polars", "spark"] = "polars"
    events: Path | None = None
    curated: Path | None = None
    proxies: tuple[str, ...] = ()
    link: LinkConf = LinkConf()
    input: InputConf = InputConf()
    expectations: ExpectationsConf = ExpectationsConf()
    lock: LockConf = LockConf()
    nightly: NightlyConf = NightlyConf()
    maintenance: MaintenanceConf = MaintenanceConf()
    spark: SparkConf = SparkConf()
    discovery: DiscoveryConf = DiscoveryConf()

    @field_validator("proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        return value

    @field_validator("proxies")
    @classmethod
    def _valid_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if AUTO in value:
            if len(value) > 1:
                raise ValueError("`auto` cannot be combined with proxy addresses")
            return value
        for text in value:
            parse_proxy(text)
        return value

    @property
    def proxies_auto(self) -> bool:
        """`proxies: auto`: each day's proxies are discovered from its data before linking."""
        return self.proxies == (AUTO,)

    def with_proxies(self, proxies: tuple[str, ...]) -> Config:
        """This config with a resolved proxy list (the discovered or recorded one)."""
        return self.model_copy(update={"proxies": tuple(proxies)})

    def link_params(self) -> LinkParams:
        if self.proxies_auto:
            raise ConfigError("proxies: auto is resolved per day; this step needs the list")
        return LinkParams(
            proxies=tuple(parse_proxy(p) for p in self.proxies),
            tolerance_ms=round(self.link.tolerance_seconds * 1000),
            clock_skew_ms=round(self.input.clock_skew_seconds * 1000),
        )

    def curated_root(self) -> Path:
        """The curated root: all that the commands which only read or maintain the published
        tables (status, validate, maintain, report, sql) need."""
        if self.curated is None:
            raise ConfigError("no curated path: set `curated:` in the config or pass --curated")
        return self.curated

    def require_paths(self) -> tuple[Path, Path]:
        """The events and curated roots; a run cannot start without both, or without proxies."""
        if self.events is None:
            raise ConfigError("no events path: set `events:` in the config or pass --events")
        curated = self.curated_root()
        self.require_proxies()
        return self.events, curated

    def require_proxies(self) -> None:
        """Linking and validating need the proxies (a list, or `auto`)."""
        if not self.proxies:
            raise ConfigError("no proxies: set `proxies:` in the config or pass --proxy")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _one_line(err: ValidationError, source: str) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown setting"
        parts.append(f"{where}: {msg}")
    return f"invalid configuration ({source}): " + "; ".join(parts)


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read YAML (if given), apply overrides (CLI flags, nested dicts), validate."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            line = exc.object[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"config {path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at line "
                f"{line}); save it as UTF-8"
            ) from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"config {path} is not valid YAML{at}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of settings")
        data = loaded
    try:
        # The file is validated on its own too: a broken file is reported even where a flag
        # overrides the broken setting, so it cannot surprise the next run that lacks the flag.
        Config.model_validate(data)
        if overrides:
            source = f"{source} + command line"
            config = Config.model_validate(_merge(data, overrides))
        else:
            config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, source)) from None
    warn_wide_proxies(config.proxies, source)
    return config


def warn_wide_proxies(proxies: tuple[str, ...], source: str) -> None:
    """A proxy range wider than a /8 (`0.0.0.0/0`) makes nearly every connection proxied: it is
    accepted, since a lab may mean it, but never silently."""
    for text in proxies:
        if text == AUTO:
            continue
        net = ipaddress.ip_network(parse_proxy(text).network)
        if net.version == 4 and net.prefixlen < 8:
            log.warning(
                "proxy range %s (%s) covers %s addresses, wider than a /8: every connection to "
                "it counts as proxied; list the proxies' own addresses unless that is meant",
                text,
                source,
                f"{net.num_addresses:,}",
            )
