"""A deterministic simulation of the broker core: simulated disk, clock and clients, a seeded
scheduler of requests, fsyncs, lost responses, crashes and restarts, and invariant checks after
every step. A failure names the seed that replays it."""
