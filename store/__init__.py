"""The Redis results store: one package for both sides of it.

- ``store.contract``: keys, value encoding, id rules, versions (standard library only);
- ``store.connection``: Redis and Redis Cluster clients from one URL, with TLS and ACLs;
- ``store.lock``: the single-publisher lock, renewed while a publish runs;
- ``store.registry``: what the store holds (current run, retained runs, their meta);
- ``store.writer``: the publish sequence (register, load, verify, meta, promote, retention) and rollback;
- ``store.reader``: the API's side: the cached run snapshot, lookups and the fallback rule;
- ``store.admin``: the operators' commands (``python -m store.admin status|rollback``).

The publish job (``jobs/publish.py``) and the API (``serving/``) both build on this package and
never on each other. Importing ``store`` itself loads nothing: Spark executors import the
contract and the connection without Flask or the rest.
"""
