import socket
import subprocess

import pytest


def test_starting_a_process_fails_a_unit_test() -> None:
    with pytest.raises(AssertionError, match="start processes"):
        subprocess.run(["true"], check=False)


def test_opening_a_connection_fails_a_unit_test() -> None:
    with pytest.raises(AssertionError, match="network"):
        socket.create_connection(("127.0.0.1", 9))
