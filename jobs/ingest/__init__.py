"""Ingest: Defender Streaming API exports into the Hive-partitioned DeviceNetworkEvents lake.

`streaming` knows the export shapes and turns one record into a lake row; `landing` writes the
lake files idempotently, one set per source file, with a ledger.
"""
