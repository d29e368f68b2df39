"""Every failure hpcci reports, one class each, each with its own exit code.

A message is one line that says what failed, why, and what to do. ``cause`` keeps the underlying exception for
``--debug``; ``transient`` marks failures worth retrying (a dropped connection, a busy scheduler).
"""

from __future__ import annotations


class HpcciError(Exception):
    """Base class: a failure the user can act on."""

    exit_code = 1
    transient = False

    def __init__(self, message: str, *, transient: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        if transient is not None:
            self.transient = transient

    def __str__(self) -> str:
        return self.message


class UsageError(HpcciError):
    """Bad command line or bad input file."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file is malformed or invalid; the message names file:line:column and key."""

    exit_code = 2


class BuildError(HpcciError):
    """An image build failed (the message shows the failing step)."""

    exit_code = 10


class PlatformError(BuildError):
    """The machine cannot build or run the requested platform."""

    exit_code = 11


class RegistryError(HpcciError):
    """A registry push, pull or manifest operation failed."""

    exit_code = 20


class RegistryAuthError(RegistryError):
    """The registry refused the credentials."""

    exit_code = 21


class ObjectStoreError(HpcciError):
    """An S3 operation failed."""

    exit_code = 30


class ObjectStoreAuthError(ObjectStoreError):
    """The S3 server refused the credentials or the signature."""

    exit_code = 31


class RemoteError(HpcciError):
    """SSH connection or remote command failure."""

    exit_code = 40


class HostKeyError(RemoteError):
    """The server's host key is unknown or changed: never accepted automatically."""

    exit_code = 41


class RemoteAuthError(RemoteError):
    """The SSH server refused the key."""

    exit_code = 42


class TransferError(RemoteError):
    """Staging the image failed (checksum mismatch, partial copy)."""

    exit_code = 43


class RuntimeConvertError(HpcciError):
    """The container runtime could not convert or run the image."""

    exit_code = 50


class SchedulerError(HpcciError):
    """The scheduler refused a job or could not be queried."""

    exit_code = 60


class SmokeTestFailed(HpcciError):
    """Smoke tests ran and at least one did not pass."""

    exit_code = 70


class ClusterProblem(SmokeTestFailed):
    """The smoke tests did not run to the end because of the cluster (node failure, preemption, the queue wait
    budget), not the code: the check run is neutral, the annotation a warning; re-run."""

    exit_code = 72


class DeadlineExceeded(HpcciError):
    """A deploy ran past its deadline; its jobs were cancelled."""

    exit_code = 71


class GitHubError(HpcciError):
    """The GitHub API refused or failed a request."""

    exit_code = 80


class ReleaseError(HpcciError):
    """A tested release could not be installed as a module, or was refused (another image under its version)."""

    exit_code = 90


class ReleaseNotInstalled(ReleaseError):
    """`hpcci rollback --to VERSION`: no such version is installed (nothing was changed)."""

    exit_code = 91


class ReleaseRefused(ReleaseError):
    """The release's version is installed already from another image; replacing it needs --replace-release."""

    exit_code = 92


INTERNAL_ERROR_EXIT = 99  # a bug in hpcci itself (cli.py prints one line and asks for a report)


class Interrupted(HpcciError):
    """Stopped by SIGINT/SIGTERM (after cleaning up)."""

    exit_code = 130
