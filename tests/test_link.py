"""Link edge cases, one small inline fixture each (docs/architecture.md, "Link semantics")."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from proxylink.transforms import schema as s
from proxylink.transforms import types
from tests.helpers import (
    PROXY,
    PROXY_PORT,
    at,
    direct,
    http_row,
    leg,
    np_row,
    request_row,
    ssl_row,
    target_np,
)

Build = Callable[..., Any]


def by_port(df: pl.DataFrame) -> dict[int | None, dict[str, Any]]:
    return {r[s.LOCAL_PORT]: r for r in df.iter_rows(named=True)}


def test_socket_match_attaches_lowercased_domain_and_delta(build: Build) -> None:
    df, _ = build([leg(0, 50001), np_row(30, "WWW.Example.COM", 50001)])
    (row,) = df.iter_rows(named=True)
    assert row[s.REMOTE_URL] == "www.example.com"
    assert row[s.LINK_METHOD] == "socket"
    assert row[s.LINK_DELTA_MS] == 30
    assert row[s.EVIDENCE_SOURCE] == "ConnectionSuccess"
    assert row[s.IS_PROXIED] and row[s.PROXY_IP] == "10.20.0.5" and row[s.PROXY_PORT] == 8080
    assert row[s.REMOTE_IP] == "10.20.0.5", "the socket columns keep what the socket saw"


def test_evidence_before_the_leg_links_with_negative_delta(build: Build) -> None:
    df, _ = build([leg(0, 50001), np_row(-1500, "a.example.com", 50001)])
    assert df[s.LINK_DELTA_MS].to_list() == [-1500]
    assert df[s.REMOTE_URL].to_list() == ["a.example.com"]


def test_tolerance_is_inclusive_and_enforced(build: Build) -> None:
    rows = [
        leg(0, 50001),
        np_row(5000, "edge.example.com", 50001),
        leg(20_000, 50002),
        np_row(25_001, "late.example.com", 50002),
    ]
    df, report = build(rows)
    ports = by_port(df.filter(pl.col(s.LINK_METHOD) != "evidence_only"))
    assert ports[50001][s.REMOTE_URL] == "edge.example.com"
    assert ports[50002][s.LINK_METHOD] == "unlinked"
    assert ports[50002][s.REMOTE_URL] is None
    # the late NP row has no leg within the tolerance, so it stands for its own connection
    assert report.counts["method_evidence_only"] == 1


def test_inspection_rows_link_on_the_socket_and_give_the_target_port(build: Build) -> None:
    rows = [
        leg(0, 50001),
        http_row(20, "api.example.com", 50001, target=8443),
        ssl_row(35, "api.example.com", 50001),
    ]
    df, report = build(rows)
    (row,) = df.iter_rows(named=True)
    assert row[s.REMOTE_URL] == "api.example.com"
    assert row[s.TARGET_PORT] == 8443
    assert row[s.EVIDENCE_SOURCE] == "HttpConnectionInspected"
    assert report.counts["evidence_folded"] == 2


def test_network_protection_evidence_is_preferred_over_inspection(build: Build) -> None:
    rows = [
        leg(0, 50001),
        http_row(5, "x.example.com", 50001),
        np_row(40, "x.example.com", 50001),
    ]
    df, _ = build(rows)
    assert df[s.EVIDENCE_SOURCE].to_list() == ["ConnectionSuccess"]
    assert df[s.LINK_DELTA_MS].to_list() == [40]
    assert df[s.TARGET_PORT].to_list() == [443]


def test_portless_evidence_links_by_process(build: Build) -> None:
    df, _ = build([leg(0, 50001), np_row(200, "p.example.com", None)])
    assert df[s.LINK_METHOD].to_list() == ["process"]
    assert df[s.REMOTE_URL].to_list() == ["p.example.com"]


def test_burst_portless_evidence_goes_to_the_one_open_leg(build: Build) -> None:
    """Four parallel sockets; three NP rows carry their port, one does not."""
    rows = [leg(i * 10, 50001 + i) for i in range(4)]
    rows += [np_row(60 + i, f"s{i}.example.com", 50001 + i) for i in (0, 1, 3)]
    rows += [np_row(70, "s2.example.com", None)]
    df, _ = build(rows)
    ports = by_port(df)
    assert {p: ports[p][s.REMOTE_URL] for p in ports} == {
        50001: "s0.example.com",
        50002: "s1.example.com",
        50003: "s2.example.com",
        50004: "s3.example.com",
    }
    assert ports[50003][s.LINK_METHOD] == "process"


def test_never_guess_between_two_portless_domains(build: Build) -> None:
    rows = [leg(0, 50001), leg(10, 50002), np_row(5, "a.com", None), np_row(12, "b.com", None)]
    df, report = build(rows)
    assert df[s.LINK_METHOD].to_list() == ["unlinked", "unlinked"]
    assert df[s.REMOTE_URL].to_list() == [None, None]
    assert report.counts["unlinked_ambiguous"] == 2
    assert report.counts["method_evidence_only"] == 0, "contested evidence is not a connection"


def test_same_domain_candidates_are_not_rivals(build: Build) -> None:
    rows = [leg(0, 50001), leg(10, 50002), np_row(5, "c.com", None), np_row(12, "c.com", None)]
    df, _ = build(rows)
    assert df[s.REMOTE_URL].to_list() == ["c.com", "c.com"]
    assert sorted(df[s.EVIDENCE_REPORT_ID].to_list()) == sorted(
        set(df[s.EVIDENCE_REPORT_ID].to_list())
    ), "one-to-one: each evidence row explains one leg"


def test_never_guess_on_one_socket_naming_two_domains(build: Build) -> None:
    rows = [leg(0, 50001), np_row(10, "a.com", 50001), ssl_row(20, "b.com", 50001)]
    df, _ = build(rows)
    assert df[s.LINK_METHOD].to_list() == ["unlinked"]


def test_portless_evidence_between_two_open_legs_explains_neither(build: Build) -> None:
    """Never guess from the evidence side: two open legs of one process, one port-less NP row
    within the tolerance of both. It may be either's; it explains neither, is counted as
    ambiguous and is folded (it is not a connection of its own either)."""
    rows = [leg(0, 50001), leg(3000, 50002), np_row(2900, "one.com", None)]
    df, report = build(rows)
    assert df[s.LINK_METHOD].to_list() == ["unlinked", "unlinked"]
    assert report.counts["evidence_ambiguous"] == 1
    assert report.counts["evidence_folded"] == 1
    assert report.counts["unlinked_ambiguous"] == 2


def test_a_leg_linked_to_another_domain_tells_a_shared_row_apart(build: Build) -> None:
    """L1 is linked on its socket to a.com; the port-less row naming b.com, within reach of
    both legs, is not L1's: it goes to L2."""
    rows = [leg(0, 50001), np_row(10, "a.com", 50001), leg(40, 50002), np_row(30, "b.com", None)]
    df, _ = build(rows)
    ports = by_port(df)
    assert (ports[50001][s.REMOTE_URL], ports[50002][s.REMOTE_URL]) == ("a.com", "b.com")
    assert ports[50002][s.LINK_METHOD] == "process"


def test_fewer_rows_than_legs_of_one_domain_links_none(build: Build) -> None:
    """Three open legs, two port-less rows of one domain: two legs are c.com, but which two
    would be a guess."""
    rows = [leg(0, 50001), leg(10, 50002), leg(20, 50003)]
    rows += [np_row(5, "c.com", None), np_row(15, "c.com", None)]
    df, report = build(rows)
    assert df[s.LINK_METHOD].to_list() == ["unlinked"] * 3
    assert report.counts["evidence_ambiguous"] == 2


def test_pid_reuse_does_not_link_another_process(build: Build) -> None:
    other = datetime(2026, 11, 1, 11, 0, tzinfo=UTC)
    rows = [leg(0, 50001), np_row(100, "reuse.com", None, InitiatingProcessCreationTime=other)]
    df, report = build(rows)
    assert df.filter(pl.col(s.LINK_METHOD) != "evidence_only")[s.LINK_METHOD].to_list() == [
        "unlinked"
    ]
    assert report.counts["method_evidence_only"] == 1


def test_socket_evidence_of_another_process_is_port_reuse(build: Build) -> None:
    rows = [leg(0, 50001), np_row(50, "other.com", 50001, InitiatingProcessId=999)]
    df, _ = build(rows)
    legs = df.filter(pl.col(s.LINK_METHOD) != "evidence_only")
    assert legs[s.LINK_METHOD].to_list() == ["unlinked"]


def test_port_reuse_later_links_each_connection_to_its_own_evidence(build: Build) -> None:
    rows = [
        leg(0, 50001),
        np_row(20, "first.com", 50001),
        leg(60_000, 50001),
        np_row(60_020, "second.com", 50001),
    ]
    df, _ = build(rows)
    assert df[s.REMOTE_URL].to_list() == ["first.com", "second.com"]


def test_evidence_with_another_port_never_links_by_process(build: Build) -> None:
    """The NP row names port 50009, whose leg is missing: it is its own connection."""
    rows = [leg(0, 50001), np_row(30, "mine.com", 50009)]
    df, report = build(rows)
    ports = by_port(df)
    assert ports[50001][s.LINK_METHOD] == "unlinked"
    assert ports[50009][s.LINK_METHOD] == "evidence_only"
    assert ports[50009][s.REMOTE_URL] == "mine.com"
    assert report.counts["curated"] == 2


def test_missing_leg_keeps_the_evidence_as_the_connection(build: Build) -> None:
    rows = [
        np_row(0, "lonely.com", 50005),
        http_row(10, "lonely.com", 50005),
        ssl_row(20, "lonely.com", 50005),
    ]
    df, report = build(rows)
    (row,) = df.iter_rows(named=True)
    assert row[s.LINK_METHOD] == "evidence_only"
    assert row[s.EVIDENCE_REPORT_ID] == row[s.REPORT_ID]
    assert row[s.LINK_DELTA_MS] is None
    assert report.counts["inspection_unmatched"] == 2


def test_real_target_shape_of_np_row_is_folded_not_direct(build: Build) -> None:
    rows = [
        leg(0, 50001),
        np_row(25, "shape2.com", 50001, RemoteIP="93.184.216.34", RemotePort=443),
    ]
    df, report = build(rows)
    (row,) = df.iter_rows(named=True)
    assert row[s.REMOTE_URL] == "shape2.com"
    assert row[s.TARGET_PORT] == 443
    assert report.counts["method_direct"] == 0


def test_real_target_row_without_a_leg_is_a_direct_connection(build: Build) -> None:
    rows = [np_row(25, "direct.com", 50001, RemoteIP="93.184.216.34", RemotePort=443)]
    df, _ = build(rows)
    assert df[s.LINK_METHOD].to_list() == ["direct"]
    assert df[s.IS_PROXIED].to_list() == [False]
    assert df[s.PROXY_IP].to_list() == [None]
    assert df[s.REMOTE_URL].to_list() == ["direct.com"]


def test_corroborating_portless_np_is_folded_into_its_linked_leg(build: Build) -> None:
    """L1 links on its socket through HTTP; its port-less NP row must neither count as a
    connection nor be handed to L2, the open leg next to it."""
    rows = [
        leg(0, 50001),
        http_row(10, "corr.com", 50001),
        np_row(15, "corr.com", None),
        leg(30, 50002),
    ]
    df, report = build(rows)
    ports = by_port(df)
    assert ports[50001][s.REMOTE_URL] == "corr.com"
    assert ports[50002][s.LINK_METHOD] == "unlinked"
    assert report.counts["curated"] == 2
    assert report.counts["evidence_folded"] == 2


def test_device_without_evidence_leaves_legs_unlinked(build: Build) -> None:
    df, report = build([leg(0, 50001), leg(100, 50002)])
    assert df[s.LINK_METHOD].to_list() == ["unlinked", "unlinked"]
    assert report.link_stats["devices_with_evidence"] == 0


def test_direct_connection_is_its_own_row(build: Build) -> None:
    df, _ = build([direct(0, port=445, RemoteUrl="FileServer.corp.local")])
    (row,) = df.iter_rows(named=True)
    assert row[s.LINK_METHOD] == "direct"
    assert row[s.TARGET_PORT] == 445
    assert row[s.REMOTE_URL] == "fileserver.corp.local"


def test_connection_across_midnight_is_linked_once(build: Build) -> None:
    before = datetime(2026, 11, 1, 23, 59, 59, tzinfo=UTC)
    ms = (before - at(0)).total_seconds() * 1000
    rows = [leg(ms, 50001), np_row(ms + 2000, "midnight.com", 50001)]
    day1, _ = build(rows)
    assert day1[s.REMOTE_URL].to_list() == ["midnight.com"]
    day2, report2 = build(rows, day=before.date() + timedelta(days=1))
    assert day2.height == 0, "the evidence after midnight is not a connection of its own"
    assert report2.counts["evidence_folded"] == 1


def test_proxy_as_network_without_port_and_ipv4_mapped_address(build: Build) -> None:
    rows = [
        leg(0, 50001, RemoteIP="::ffff:10.20.0.5", RemotePort=3128),
        np_row(10, "cidr.com", 50001, RemoteIP="::ffff:10.20.0.5", RemotePort=3128),
    ]
    df, _ = build(rows, proxies=("10.20.0.0/24",))
    assert df[s.REMOTE_URL].to_list() == ["cidr.com"]
    assert df[s.PROXY_IP].to_list() == ["::ffff:10.20.0.5"]


def test_proxy_port_restricts_what_counts_as_a_leg(build: Build) -> None:
    rows = [leg(0, 50001, RemotePort=3128)]
    df, _ = build(rows, proxies=("10.20.0.5:8080",))
    assert df[s.LINK_METHOD].to_list() == ["direct"]


def test_plain_http_request_links_its_leg_on_the_socket(build: Build) -> None:
    """A proxied http:// request is not tunnelled: its Host header and absolute URI name the
    target on the proxy socket, and the URI's port is the target port."""
    rows = [leg(0, 50001), request_row(15, "Get.Example.com:8080", "http://get.example.com:8080/a")]
    rows[1][s.LOCAL_PORT] = 50001
    df, report = build(rows)
    (row,) = df.iter_rows(named=True)
    assert row[s.REMOTE_URL] == "get.example.com"
    assert row[s.LINK_METHOD] == "socket"
    assert row[s.TARGET_PORT] == 8080
    assert row[s.EVIDENCE_SOURCE] == s.HTTP_INSPECTED
    assert row[s.REQUEST_HOSTS] == 1
    assert report.counts["evidence_folded"] == 1


def test_plain_request_target_port_comes_from_its_uri_or_defaults_to_80(build: Build) -> None:
    rows = [
        leg(0, 50001),
        request_row(5, "h.example.com", "/index.html", 50001, method="HEAD"),
        leg(100, 50002),
        request_row(105, None, "https://s.example.com/x?q=1", 50002, method="POST"),
        leg(200, 50003),
        request_row(205, "p.example.com", "http://p.example.com/", 50003, method="put"),
    ]
    ports = by_port(build(rows)[0])
    got = {p: (r[s.REMOTE_URL], r[s.TARGET_PORT]) for p, r in ports.items()}
    assert got == {
        50001: ("h.example.com", 80),
        50002: ("s.example.com", 443),
        50003: ("p.example.com", 80),
    }


def test_a_keep_alive_socket_names_its_first_host_and_counts_the_hosts(build: Build) -> None:
    """Requests for several hosts on one socket to the proxy are one connection's: the first
    names it (no ambiguity among them), RequestHosts says how many hosts it carried."""
    rows = [
        leg(0, 50001),
        request_row(30, "b.example.com", "http://b.example.com/2", 50001),
        request_row(10, "a.example.com", "http://a.example.com/1", 50001),
        request_row(50, "a.example.com", "http://a.example.com/3", 50001),
    ]
    df, report = build(rows)
    (row,) = df.iter_rows(named=True)
    assert row[s.REMOTE_URL] == "a.example.com"
    assert row[s.REQUEST_HOSTS] == 2
    assert row[s.LINK_DELTA_MS] == 10
    assert report.counts["evidence_folded"] == 3 and report.counts["inspection_unmatched"] == 0


def test_a_plain_request_closes_its_leg_so_a_portless_row_goes_to_the_other(build: Build) -> None:
    """Only CONNECT counted once: the GET's leg stayed open and took a neighbour's port-less
    network-protection row. Linked by its request, it is no candidate any more."""
    rows = [
        leg(0, 50001),
        request_row(5, "get.example.com", "http://get.example.com/", 50001),
        leg(20, 50002),
        np_row(25, "np.example.com", None),
    ]
    ports = by_port(build(rows)[0])
    assert ports[50001][s.REMOTE_URL] == "get.example.com"
    assert ports[50002][s.REMOTE_URL] == "np.example.com"


def test_a_connect_is_not_a_plain_request(build: Build) -> None:
    """A CONNECT's host with :443 names the tunnel's target; RequestHosts stays null."""
    rows = [leg(0, 50001), http_row(10, "tls.example.com:443", 50001, target=443)]
    (row,) = build(rows)[0].iter_rows(named=True)
    assert (row[s.REMOTE_URL], row[s.TARGET_PORT]) == ("tls.example.com", 443)
    assert row[s.REQUEST_HOSTS] is None


def test_target_ip_row_without_a_port_links_by_process_and_is_not_direct(build: Build) -> None:
    """Network protection that shows the real target and no LocalPort explains the open leg of
    its process: it is folded into it, never also a direct connection."""
    rows = [leg(0, 50001), target_np(40, "t.example.com", None)]
    df, report = build(rows)
    (row,) = df.iter_rows(named=True)
    assert (row[s.REMOTE_URL], row[s.LINK_METHOD]) == ("t.example.com", "process")
    assert row[s.TARGET_PORT] == 443
    assert report.counts["method_direct"] == 0


def test_target_ip_row_between_two_open_legs_is_ambiguous_not_direct(build: Build) -> None:
    rows = [leg(0, 50001), leg(20, 50002), target_np(10, "t.example.com", None)]
    df, report = build(rows)
    assert df[s.LINK_METHOD].to_list() == ["unlinked", "unlinked"]
    assert report.counts["method_direct"] == 0 and report.counts["evidence_ambiguous"] == 1


def test_target_ip_row_is_direct_when_no_open_leg_of_its_process_is_near(build: Build) -> None:
    """A direct connection: no leg within the tolerance, or only one told apart (linked to
    another domain on its socket)."""
    rows = [
        target_np(0, "alone.example.com", None),
        leg(60_000, 50002),
        np_row(60_010, "a.example.com", 50002),
        target_np(60_020, "direct.example.com", None),
    ]
    df, report = build(rows)
    direct_rows = df.filter(pl.col(s.LINK_METHOD) == "direct")
    assert sorted(direct_rows[s.REMOTE_URL]) == ["alone.example.com", "direct.example.com"]
    assert not direct_rows[s.IS_PROXIED].any()
    assert report.counts["method_socket"] == 1


def test_ipv4_mapped_leg_and_plain_inspection_row_are_one_socket(build: Build) -> None:
    """Process events may show ::ffff:10.20.0.5 where the inspection sensor shows 10.20.0.5."""
    rows = [leg(0, 50001, RemoteIP="::ffff:10.20.0.5"), ssl_row(20, "mapped.example.com", 50001)]
    (row,) = build(rows)[0].iter_rows(named=True)
    assert (row[s.REMOTE_URL], row[s.LINK_METHOD]) == ("mapped.example.com", "socket")
    assert row[s.PROXY_IP] == "::ffff:10.20.0.5"


def test_remote_url_forms_are_one_host_name(build: Build) -> None:
    rows = [
        leg(0, 50001),
        np_row(5, "https://WWW.Forms.Example.com/path?q=1", 50001),
        leg(100, 50002),
        np_row(105, "API.forms.example.com:443", 50002),
    ]
    ports = by_port(build(rows)[0])
    assert ports[50001][s.REMOTE_URL] == "www.forms.example.com"
    assert ports[50002][s.REMOTE_URL] == "api.forms.example.com"


def test_inspection_clock_offset_and_late_evidence_still_link(build: Build) -> None:
    """The inspection sensor's clock runs 1-2 s off the process events; network protection may
    arrive 2-4.5 s after its leg."""
    rows = [
        leg(0, 50001),
        ssl_row(-1800, "skew.example.com", 50001),
        leg(20_000, 50002),
        np_row(24_500, "late.example.com", 50002),
    ]
    ports = by_port(build(rows)[0])
    assert ports[50001][s.REMOTE_URL] == "skew.example.com"
    assert ports[50002][s.REMOTE_URL] == "late.example.com"


def test_target_ip_row_on_a_proxied_socket_without_its_leg_is_evidence_only(build: Build) -> None:
    """The leg is missing, but inspection rows on the proxy socket with the row's local port
    name its domain: it went through the proxy. It stands for its connection as evidence only,
    with the proxy those rows show; it is not a direct connection."""
    rows = [
        target_np(0, "t.example.com", 50001),
        ssl_row(30, "t.example.com", 50001),
        target_np(60_000, "d.example.com", 50002),
        # without a LocalPort: an unused inspection row of the device naming its domain
        target_np(120_000, "p.example.com", None),
        http_row(120_040, "p.example.com", 50003),
    ]
    df, report = build(rows)
    by_url = {r[s.REMOTE_URL]: r for r in df.iter_rows(named=True)}
    for url in ("t.example.com", "p.example.com"):
        proxied = by_url[url]
        assert (proxied[s.LINK_METHOD], proxied[s.IS_PROXIED]) == ("evidence_only", True)
        assert (proxied[s.PROXY_IP], proxied[s.PROXY_PORT]) == (PROXY, PROXY_PORT)
        assert proxied[s.REMOTE_IP] == "93.184.216.34" and proxied[s.TARGET_PORT] == 443
    assert by_url["d.example.com"][s.LINK_METHOD] == "direct"
    assert report.counts["evidence_folded"] == 2 and report.counts["inspection_unmatched"] == 0


def test_target_ip_row_at_midnight_takes_its_proxy_from_the_next_days_inspection_row(
    build: Build,
) -> None:
    """The inspection row that shows a target-IP row went through the proxy may fall just past
    midnight, in the next day's context hour: the published row still shows that row's proxy,
    not its own target address (found by the bench at 3x the events)."""
    to_midnight = 12 * 3600 * 1000  # T0 is noon of day D
    rows = [
        target_np(to_midnight - 100, "late.example.com", 50001),
        ssl_row(to_midnight + 50, "late.example.com", 50001),
    ]
    df, report = build(rows)
    assert df.height == 1
    row = df.row(0, named=True)
    assert (row[s.LINK_METHOD], row[s.IS_PROXIED]) == ("evidence_only", True)
    assert (row[s.PROXY_IP], row[s.PROXY_PORT]) == (PROXY, PROXY_PORT)
    assert row[s.REMOTE_IP] == "93.184.216.34"
    # the inspection row belongs to the next day: that day's run counts it
    assert report.counts["curated"] == 1 and report.counts["evidence_folded"] == 0


def test_the_published_columns_have_the_types_declared_once(build: Build) -> None:
    """Every curated column the contract names is published with the type `transforms.types`
    declares for it, on both engines: the reader, the core and the writer agree."""
    table, _ = build([leg(0), np_row(10, "Example.com")])
    declared = {c: t for c, t in types.polars_schema(list(types.KINDS)).items() if c in table}
    published = {c: table.schema[c] for c in declared}
    assert published == declared
    assert set(types.ADDED_KINDS) <= set(table.columns)
