"""Listeners, TLS, SASL and the credentials behind them (docs/security.md)."""
