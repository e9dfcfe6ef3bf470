"""The history warehouse in DuckDB: configuration history (type-2), statistics samples,
hourly/daily rollups, retention, and views named like oVirt's DWH (``v4_4_*``).

May import ``domain`` (and ``projections``); never ``commands``, ``api`` or ``hostd``:
callers hand in the log as ``read(after, limit) -> [(notification_id, event)]``
(``commands.store.EventLog.read``) and telemetry as ``history.samples`` structs.

Modules: ``schema`` (tables, views), ``config`` (type-2 tracker), ``samples`` (sample
structs, ``Sampler``), ``warehouse`` (``Warehouse``: catch_up, ingest_samples, rollup,
apply_retention, query, run_sql), ``readonly`` (what SQL from outside may do: the DuckDB
lock-down, the statement allow-list, time and row limits), ``runner``
(``HistoryRunner``: the Manager's feeding loop), ``reports`` (canned reports + PNG
charts), ``estimate`` (size prediction).
The file is ``data_dir/orrery-history.duckdb`` (``warehouse.path_in``).
"""
