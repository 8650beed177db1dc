"""The ZeroMQ service: server, job queue and executor, journal, events."""
