import socket
import subprocess

import pytest

from conftest import OutsideWorld  # type: ignore[import-not-found]


def test_starting_a_process_fails_a_unit_test() -> None:
    with pytest.raises(OutsideWorld, match="start processes"):
        subprocess.run(["true"], check=False)


def test_opening_a_connection_fails_a_unit_test() -> None:
    with pytest.raises(OutsideWorld, match="network"):
        socket.create_connection(("127.0.0.1", 9))
