"""The ``fieldgate`` command: composes the gateway, cloud and simulator parts (CLI, demo,
benchmarks). Nothing here is imported by the parts themselves."""
