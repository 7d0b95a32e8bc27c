"""PostgreSQL backend of the store (SPEC §12, §15): the same protocol as SQLite, for several replicas.

`store` (peerings) and `acl` (ACL policies and tokens) share one pool and one index counter; their SQL
is in `queries` and `schema`; `errors` turns asyncpg's failures into the project's errors.
"""
