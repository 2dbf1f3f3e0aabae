-- DuckDB baseline for the proxylink benchmark: the same day-D linking, written by hand in SQL.
--
-- It reads the same planned files, classifies rows the way transforms/polars_engine/classify.py
-- does and links each proxy leg to the evidence nearest in time, socket tier first, then process
-- tier. It is deliberately the simpler linker the issue asks for as a baseline: no one-to-one
-- assignment and no "never guess" rule, so a leg always takes its nearest candidate.
--
-- Placeholders in double braces are filled in by bench/duckdb_link.py:
--   files          a list literal of the planned Parquet files
--   context_start  day D's midnight minus two tolerances (TIMESTAMPTZ literal text)
--   context_end    day D+1's midnight plus two tolerances
--   day_start      day D's midnight
--   day_end        day D+1's midnight
--   tolerance_us   the link tolerance in microseconds
--   to_proxy       a predicate over (_ip, RemotePort) that is true for a configured proxy
--   out            the output Parquet file

SET TimeZone = 'UTC';

-- Real exports mix null and "" (and "-" for addresses); both mean "missing".
CREATE OR REPLACE TEMP MACRO blank_null(x) AS CASE WHEN trim(x) = '' THEN NULL ELSE x END;
CREATE OR REPLACE TEMP MACRO blank_ip(x) AS CASE WHEN trim(x) IN ('', '-') THEN NULL ELSE x END;

-- Ports are sometimes stored as text; a port is an integer in 0..65535, anything else is missing.
CREATE OR REPLACE TEMP MACRO as_port(x) AS
    CASE WHEN TRY_CAST(x AS BIGINT) BETWEEN 0 AND 65535 THEN TRY_CAST(x AS INTEGER) END;

-- A host name as analysts compare it: lower case, no scheme, path, user, port or trailing dot
-- (classify.normalise_domain).
CREATE OR REPLACE TEMP MACRO norm_domain(x) AS nullif(
    rtrim(
        regexp_replace(
            regexp_replace(
                regexp_replace(
                    regexp_replace(lower(trim(x)), '^[a-z][a-z0-9+.\-]*://', ''),
                    '[/?#].*$', ''),
                '^[^@]*@', ''),
            ':[0-9]*$', ''),
        '.'),
    '');

-- Timestamps are sometimes stored as text (Kusto writes seven fractional digits and a Z, one
-- more than DuckDB parses) or in nanoseconds; all are read as microsecond TIMESTAMPTZ.
CREATE OR REPLACE TEMP MACRO as_ts(x) AS coalesce(
    TRY_CAST(x AS TIMESTAMPTZ),
    TRY_CAST(regexp_replace(CAST(x AS VARCHAR), '(\.[0-9]{6})[0-9]+', '\1') AS TIMESTAMPTZ));

-- A field of AdditionalFields; text that is not JSON yields null instead of failing the query.
CREATE OR REPLACE TEMP MACRO json_field(doc, path) AS try(json_extract_string(doc, path));

COPY (
    WITH
    -- 1. read: only the planned files. union_by_name because hours differ in column types
    --    (ports and timestamps as text) and in optional columns; the hive directories are not
    --    data columns.
    raw AS (
        SELECT *
        FROM read_parquet({{files}}, union_by_name = true, hive_partitioning = false)
    ),

    -- 2. normalise: contract types, blanks as null, the context window, a usable key.
    --    Exact duplicates are dropped at the end, on day D's output rows only: a duplicate leg
    --    or evidence row changes no link (it ties with its twin), and deduplicating the few
    --    output rows is much cheaper than deduplicating every wide row read.
    typed AS (
        SELECT * REPLACE (
            blank_null(DeviceId) AS DeviceId,
            blank_null(DeviceName) AS DeviceName,
            blank_null(ActionType) AS ActionType,
            blank_ip(RemoteIP) AS RemoteIP,
            blank_null(RemoteUrl) AS RemoteUrl,
            blank_ip(LocalIP) AS LocalIP,
            blank_null(Protocol) AS Protocol,
            blank_null(AdditionalFields) AS AdditionalFields,
            as_port(RemotePort) AS RemotePort,
            as_port(LocalPort) AS LocalPort,
            as_ts("Timestamp") AS "Timestamp",
            as_ts(InitiatingProcessCreationTime) AS InitiatingProcessCreationTime
        )
        FROM raw
        WHERE as_ts("Timestamp") >= TIMESTAMPTZ '{{context_start}}'
          AND as_ts("Timestamp") < TIMESTAMPTZ '{{context_end}}'
          AND ReportId IS NOT NULL
    ),

    -- 3. classify, in two steps so that each expression is computed once (a lateral alias
    --    would be expanded, and re-evaluated, where it is used).
    --    First the destination each row names and whether its socket goes to a proxy ...
    located AS (
        SELECT
            *,
            coalesce({{to_proxy}}, false) AS _to_proxy,
            CASE
                WHEN ActionType = 'ConnectionSuccess' THEN norm_domain(RemoteUrl)
                WHEN ActionType = 'HttpConnectionInspected'
                     AND upper(json_field(AdditionalFields, '$.method')) = 'CONNECT'
                    THEN norm_domain(coalesce(json_field(AdditionalFields, '$.host'),
                                              json_field(AdditionalFields, '$.uri')))
                WHEN ActionType = 'SslConnectionInspected'
                    THEN norm_domain(json_field(AdditionalFields, '$.server_name'))
            END AS _domain,
            -- the real destination port: CONNECT host:PORT, or the socket's own port
            CASE
                WHEN ActionType = 'HttpConnectionInspected' THEN TRY_CAST(coalesce(
                    nullif(regexp_extract(json_field(AdditionalFields, '$.uri'),
                                          ':([0-9]{1,5})$', 1), ''),
                    nullif(regexp_extract(json_field(AdditionalFields, '$.host'),
                                          ':([0-9]{1,5})$', 1), '')) AS INTEGER)
                WHEN ActionType = 'ConnectionSuccess' THEN RemotePort
            END AS _target_port
        FROM (
            SELECT *, regexp_replace(lower(trim(RemoteIP)), '^::ffff:', '') AS _ip
            FROM typed
            WHERE DeviceId IS NOT NULL
        )
    ),

    -- ... then its role.
    classified AS MATERIALIZED (
        SELECT
            * EXCLUDE (_ip, _to_proxy),
            CASE
                WHEN ActionType = 'ConnectionSuccess' THEN CASE
                    -- a socket to the proxy that names no domain: the leg
                    WHEN _to_proxy AND _domain IS NULL THEN 'leg'
                    -- network protection's view of the same socket: evidence
                    WHEN _to_proxy THEN 'np'
                    -- network protection showing the real target socket: evidence if it sits
                    -- on a leg's local port and process, a direct connection otherwise
                    WHEN _domain IS NOT NULL AND coalesce(InitiatingProcessId, 0) <> 0
                         AND LocalPort IS NOT NULL THEN 'np2'
                    ELSE 'direct'
                END
                WHEN ActionType = 'HttpConnectionInspected' AND _to_proxy
                     AND _domain IS NOT NULL THEN 'http'
                WHEN ActionType = 'SslConnectionInspected' AND _to_proxy
                     AND _domain IS NOT NULL THEN 'ssl'
                ELSE 'other'
            END AS _role
        FROM located
    ),

    legs AS (
        SELECT
            DeviceId,
            "Timestamp" AS leg_ts,
            ReportId AS leg_rid,
            LocalPort AS leg_port,
            RemoteIP AS leg_ip,
            RemotePort AS leg_rport,
            InitiatingProcessId AS leg_pid,
            InitiatingProcessCreationTime AS leg_pct
        FROM classified
        WHERE _role = 'leg'
    ),

    evidence AS (
        SELECT
            DeviceId,
            "Timestamp" AS ev_ts,
            ReportId AS ev_rid,
            ActionType AS ev_action,
            _role AS ev_role,
            _domain AS ev_domain,
            _target_port AS ev_target_port,
            LocalPort AS ev_port,
            RemoteIP AS ev_ip,
            RemotePort AS ev_rport,
            InitiatingProcessId AS ev_pid,
            InitiatingProcessCreationTime AS ev_pct
        FROM classified
        WHERE _role IN ('np', 'np2', 'http', 'ssl')
    ),

    -- 4a. socket tier: same device and local port, within the tolerance. The proxy socket must
    --     agree, and evidence that carries a process must come from the leg's process (a local
    --     port reused by another process is another connection). An np2 row shows the real
    --     target, so it matches on device, local port and process only. The key is nearly
    --     unique, so a plain equi-join stays small.
    socket_pairs AS MATERIALIZED (
        SELECT l.*, e.* EXCLUDE (DeviceId), epoch_us(e.ev_ts) - epoch_us(l.leg_ts) AS delta_us
        FROM legs AS l
        JOIN evidence AS e
          ON e.DeviceId = l.DeviceId
         AND e.ev_port = l.leg_port
         AND abs(epoch_us(e.ev_ts) - epoch_us(l.leg_ts)) <= {{tolerance_us}}
        WHERE CASE
            WHEN e.ev_role = 'np2'
                THEN e.ev_pid = l.leg_pid AND e.ev_pct IS NOT DISTINCT FROM l.leg_pct
            ELSE e.ev_ip = l.leg_ip AND e.ev_rport = l.leg_rport
                 AND (coalesce(e.ev_pid, 0) = 0
                      OR (e.ev_pid = l.leg_pid AND e.ev_pct IS NOT DISTINCT FROM l.leg_pct))
        END
    ),

    -- Nearest candidate per leg; the target port comes from a CONNECT or np2 candidate.
    socket_links AS (
        SELECT
            DeviceId, leg_ts, leg_rid, ev_domain, ev_action, ev_rid, delta_us,
            'socket' AS method,
            max(ev_target_port) FILTER (WHERE ev_role IN ('http', 'np2')) OVER leg
                AS target_port
        FROM socket_pairs
        WINDOW leg AS (PARTITION BY DeviceId, leg_ts, leg_rid)
        QUALIFY row_number() OVER (leg ORDER BY abs(delta_us), ev_ts, ev_rid) = 1
    ),

    -- 4b. process tier: network-protection rows of the leg's process (device, pid, creation
    --     time) within the tolerance, where the local ports cannot disagree (one side has none)
    --     and the evidence socket, if known, is the leg's proxy. A busy process has thousands
    --     of events a day, so candidates are generated per time bucket of one tolerance: each
    --     evidence row joins its own and both neighbouring buckets, which bounds the join.
    process_evidence AS (
        SELECT *, unnest([b - 1, b, b + 1]) AS bucket
        FROM (
            SELECT *, epoch_us(ev_ts) // {{tolerance_us}} AS b
            FROM evidence
            WHERE ev_role = 'np' AND coalesce(ev_pid, 0) <> 0
        )
    ),

    process_pairs AS MATERIALIZED (
        SELECT l.*, e.* EXCLUDE (DeviceId, b, bucket),
               epoch_us(e.ev_ts) - epoch_us(l.leg_ts) AS delta_us
        FROM legs AS l
        JOIN process_evidence AS e
          ON e.DeviceId = l.DeviceId
         AND e.ev_pid = l.leg_pid
         AND e.ev_pct IS NOT DISTINCT FROM l.leg_pct
         AND e.bucket = epoch_us(l.leg_ts) // {{tolerance_us}}
        WHERE coalesce(l.leg_pid, 0) <> 0
          AND abs(epoch_us(e.ev_ts) - epoch_us(l.leg_ts)) <= {{tolerance_us}}
          AND (e.ev_port IS NULL OR l.leg_port IS NULL)
          AND (e.ev_ip IS NULL
               OR (e.ev_ip = l.leg_ip AND (e.ev_rport IS NULL OR e.ev_rport = l.leg_rport)))
    ),

    -- Only legs the socket tier left open link on the process tier.
    process_links AS (
        SELECT
            DeviceId, leg_ts, leg_rid, ev_domain, ev_action, ev_rid, delta_us,
            'process' AS method,
            NULL::INTEGER AS target_port
        FROM process_pairs AS p
        WHERE NOT EXISTS (
            SELECT 1 FROM socket_pairs AS s
            WHERE s.DeviceId = p.DeviceId AND s.leg_ts = p.leg_ts AND s.leg_rid = p.leg_rid
        )
        QUALIFY row_number() OVER (
            PARTITION BY DeviceId, leg_ts, leg_rid ORDER BY abs(delta_us), ev_ts, ev_rid
        ) = 1
    ),

    links AS (
        SELECT * FROM socket_links
        UNION ALL
        SELECT * FROM process_links
    ),

    -- Network-protection rows within the tolerance of a leg are that leg's evidence and are
    -- folded into it; the ones no leg claims are connections whose leg is missing.
    folded AS (
        SELECT DISTINCT DeviceId, ev_ts, ev_rid, true AS is_folded
        FROM (
            SELECT DeviceId, ev_ts, ev_rid FROM socket_pairs WHERE ev_role IN ('np', 'np2')
            UNION ALL
            SELECT DeviceId, ev_ts, ev_rid FROM process_pairs
        )
    ),

    -- 5. assemble day D: legs, direct connections and evidence-only rows, all source columns,
    --    one row per event key (exact duplicates go).
    day_rows AS (
        SELECT DISTINCT ON (c.DeviceId, c."Timestamp", c.ReportId)
            c.*,
            k.method, k.ev_domain, k.ev_action, k.ev_rid, k.delta_us, k.target_port
        FROM classified AS c
        LEFT JOIN links AS k
          ON c._role = 'leg'
         AND k.DeviceId = c.DeviceId AND k.leg_ts = c."Timestamp" AND k.leg_rid = c.ReportId
        LEFT JOIN folded AS f
          ON c._role IN ('np', 'np2')
         AND f.DeviceId = c.DeviceId AND f.ev_ts = c."Timestamp" AND f.ev_rid = c.ReportId
        WHERE c."Timestamp" >= TIMESTAMPTZ '{{day_start}}'
          AND c."Timestamp" < TIMESTAMPTZ '{{day_end}}'
          AND c._role IN ('leg', 'direct', 'np', 'np2')
          AND f.is_folded IS NULL
    )

    SELECT
        * EXCLUDE (_domain, _target_port, _role,
                   method, ev_domain, ev_action, ev_rid, delta_us, target_port)
          REPLACE (CASE WHEN _role = 'leg' THEN ev_domain ELSE _domain END AS RemoteUrl),
        _role IN ('leg', 'np') AS IsProxied,
        CASE WHEN _role IN ('leg', 'np') THEN RemoteIP END AS ProxyIP,
        CASE WHEN _role IN ('leg', 'np') THEN RemotePort END AS ProxyPort,
        CASE
            WHEN _role = 'leg' THEN target_port
            WHEN _role IN ('direct', 'np2') THEN RemotePort
        END AS TargetPort,
        CASE
            WHEN _role = 'leg' THEN coalesce(method, 'unlinked')
            WHEN _role = 'np' THEN 'evidence_only'
            ELSE 'direct'
        END AS LinkMethod,
        -- evidence time minus leg time, whole milliseconds towards zero
        (sign(delta_us) * (abs(delta_us) // 1000))::BIGINT AS LinkDeltaMs,
        CASE WHEN _role = 'leg' THEN ev_action WHEN _role = 'np' THEN ActionType END
            AS EvidenceSource,
        CASE WHEN _role = 'leg' THEN ev_rid WHEN _role = 'np' THEN ReportId END
            AS EvidenceReportId
    FROM day_rows
) TO '{{out}}' (FORMAT parquet, COMPRESSION zstd);
