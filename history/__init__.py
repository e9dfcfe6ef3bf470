"""The history warehouse in DuckDB: configuration history (type-2), statistics samples,
hourly/daily rollups, retention, and views named like oVirt's DWH.

May import ``domain`` and the projection runner from ``projections``.
"""
