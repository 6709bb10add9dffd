"""Security: listeners, TLS, SASL and the credentials behind them; the authorizer (ACLs,
`samsa.security.acl`) and its store in the data dir (docs/security.md)."""
