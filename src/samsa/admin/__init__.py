"""samsa's own admin tooling: a small blocking kio client and the `samsa txn` commands."""
