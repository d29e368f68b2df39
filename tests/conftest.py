"""Shared test settings. Unit-test guards live in tests/unit/conftest.py; the local stack in tests/integration/."""
