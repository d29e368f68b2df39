"""Slurm's PENDING reasons (squeue %r / sacct Reason): what each means, what to do, and which never clear.

The words are Slurm's own (squeue(1), "JOB REASON CODES"); the sentences are what hpcci says of a job pending for
that reason, and the two sets decide whether waiting can help (hopeless) and whether a person must change the
cluster config (action required).
"""

from __future__ import annotations

import re

# PENDING reasons (squeue %r / sacct Reason): what they mean and what to do.
_PENDING_REASONS = {
    "None": "is waiting to be scheduled",
    "Priority": "is waiting behind higher-priority jobs",
    "Resources": "is waiting for free resources",
    "Dependency": "is waiting for the job it depends on",
    "DependencyNeverSatisfied": "can never start: the job it depends on failed",
    "BeginTime": "is waiting for its start time",
    "ReqNodeNotAvail": "is waiting for nodes that are not available (down, drained or reserved); "
    "check `sinfo` or pick another partition",
    "PartitionDown": "is waiting because its partition is down; ask the cluster's admins or pick another partition",
    "PartitionInactive": "is waiting because its partition is inactive; pick another partition",
    "PartitionNodeLimit": "asks for more nodes than its partition allows; lower resources.nodes",
    "PartitionTimeLimit": "asks for more time than its partition allows; lower resources.time",
    "PartitionConfig": "asks for something its partition cannot give (cores, memory or GRES); check the partition",
    "InvalidAccount": "can never start: the account is invalid or not allowed on this partition; "
    "fix scheduler.account in the cluster config",
    "InvalidQOS": "can never start: the QOS is invalid for this account; fix scheduler.qos in the cluster config",
    "QOSNotAllowed": "can never start: the QOS is not allowed on this partition; fix scheduler.qos",
    "AccountNotAllowed": "can never start: the account may not use this partition; fix scheduler.account",
    "JobHeldUser": "is held by its user (`scontrol release` it)",
    "JobHeldAdmin": "is held by an administrator",
    "BadConstraints": "can never start: its constraints cannot be satisfied; check the partition's directives",
    "ReqNodeNotAvail, UnavailableNodes": "is waiting for nodes that are not available",
    "AssocGrpCpuLimit": "is waiting: the account's CPU limit is reached",
    "AssocGrpJobsLimit": "is waiting: the account's job limit is reached",
    "AssocMaxJobsLimit": "is waiting: the account's limit on running jobs is reached",
    "QOSMaxWallDurationPerJobLimit": "can never start: it asks for more time than the QOS allows; lower resources.time",
    "Reservation": "is waiting for its reservation to start",
    "NodeDown": "is waiting because a required node is down",
}
# Reasons that will not clear by waiting: the deploy cancels such a job at once instead of waiting for its deadline.
HOPELESS_REASONS = frozenset(
    {
        "DependencyNeverSatisfied",
        "InvalidAccount",
        "InvalidQOS",
        "QOSNotAllowed",
        "AccountNotAllowed",
        "BadConstraints",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "QOSMaxWallDurationPerJobLimit",
    }
)


def reason_base(reason: str) -> str:
    """'ReqNodeNotAvail, UnavailableNodes:n1' -> 'ReqNodeNotAvail'."""
    return re.split(r"[,:( ]", reason.strip(), maxsplit=1)[0] if reason.strip() else ""


# Of those, the ones a person fixes in the cluster config (account, QOS, partition limits): verdict action_required.
ACTION_REQUIRED_REASONS = HOPELESS_REASONS - {"DependencyNeverSatisfied"}


def is_hopeless(reason: str) -> bool:
    return reason_base(reason) in HOPELESS_REASONS


def needs_action(reason: str) -> bool:
    """A pending reason only a change of the cluster config (or the site's accounting) can clear."""
    return reason_base(reason) in ACTION_REQUIRED_REASONS


def pending_sentence(reason: str) -> str:
    base = reason_base(reason)
    sentence = _PENDING_REASONS.get(reason) or _PENDING_REASONS.get(base)
    if sentence:
        return sentence
    return f"is waiting in the queue (Slurm reason: {reason})" if reason else "is waiting in the queue"
