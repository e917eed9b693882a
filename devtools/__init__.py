"""Local tooling (not shipped): drive a real broker and real forwarder processes for the demo,
the tests and the benchmarks."""
