"""Test configuration: every shared fixture lives in ``tests/fixtures/`` (see its
``__init__``), registered here as plugins; plain helpers are imported from
``tests.fixtures.<module>``. Test modules never import each other."""

pytest_plugins = [
    "pytester",
    "tests.fixtures.broker",
    "tests.fixtures.secure_kafka",
    "tests.fixtures.s3_server",
]
