"""The transaction coordinator (KIP-98): transactional ids, epochs, the state machine, markers."""
