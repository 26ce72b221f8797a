"""Fixture registry: each part of the bridge keeps its fixtures in ``tests/fixtures/<part>.py``."""

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.simulator",
    "tests.fixtures.receiver",
    "tests.fixtures.worker",
    "tests.fixtures.cluster",
    "tests.fixtures.cli",
]
