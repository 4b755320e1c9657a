"""Instance replacement for update-stack: bring every instance of the transactor group onto the
launch template version the stack declares, with one Datomic HA failover and no transactor gap
beyond it.

Owns: reading the group and the role each instance publishes (group.py: `read_group`,
`with_roles`, `read_state`, the one read a roll starts from), one pure planner (plan.py: `plan`
returns a frozen tuple of typed steps, each with `describe()`; `render` is the dry run), the
executor that runs exactly those steps (roll.py on base.py's plumbing), the entry points (run.py:
`replace_outdated`, `execute`, `ensure_group_version`) and what a roll measured
(availability.py). The two replacement strategies: `surge` (launch the replacement first, then
terminate the old instance with a decrement) and `terminate` (Datomic's old way: terminate, wait
for the replacement; downtime for a group of one).

Role-aware surge (each instance publishes `datomic:role`, reference §10): outdated standbys first,
each by surge; the active last, once a current-version standby is InService and is the only
standby left, so exactly one standby takes over (two waiting standbys race and one dies). A group
of 1 surges its standby first; a larger group terminates the active with a decrement (MinSize
lowered for the while) and grows back after the takeover. When no instance publishes a role, the
old order (newest first, all by surge) is kept and a warning says so. AZRebalance is suspended for
the roll (reference §11: explicit terminations unbalance the zones and the group would launch and
terminate on its own).

It must not print (progress goes through the `on_progress` callback), must not build boto3 clients
(they are injected), must not touch the stack, the launch template or any data resource, and never
uses instance refresh (moto lacks it, and it knows nothing about which transactor is active).

Read once, plan once: a roll reads the group, its instances' roles and the launch template once
(`read_state`), plans from that, and the executor runs the plan's steps; its later reads are the
polls of its waits. A no-op (nothing outdated, sizes right) is those three reads and no write.

Crash convergence: every step acts on what AWS reports now, never on what this process
remembers, and a rerun plans again from the group, so a rerun after a kill at any point finishes
the job. What a rerun could not know from
the group itself is kept in group tags written before the change they undo and removed after:
the MaxSize before a raise (`MAX_TAG`), the MinSize before a lowering (`MIN_TAG`), and that this
tool suspended AZRebalance (`AZ_TAG`; a process the operator suspended is never resumed). The
group size the stack declares (`target_size`) is the truth, not whatever DesiredCapacity a killed
run left behind.
"""

from datomic_aws.replace.availability import Availability
from datomic_aws.replace.base import Timing
from datomic_aws.replace.group import (
    AZ_REBALANCE,
    AZ_TAG,
    LEAVING_PREFIXES,
    MAX_TAG,
    MIN_TAG,
    ROLES_UNKNOWN_WARNING,
    TERMINATE_WARNING,
    GroupInfo,
    InstanceInfo,
    RollState,
    Strategy,
    is_current,
    pending_state,
    read_group,
    read_state,
    resolve_version,
    with_roles,
)
from datomic_aws.replace.plan import (
    Options,
    ReplaceActive,
    plan,
    render,
    render_pending,
)
from datomic_aws.replace.run import dry_run_changes, ensure_group_version, execute, replace_outdated

__all__ = [
    "AZ_REBALANCE",
    "AZ_TAG",
    "LEAVING_PREFIXES",
    "MAX_TAG",
    "MIN_TAG",
    "ROLES_UNKNOWN_WARNING",
    "TERMINATE_WARNING",
    "Availability",
    "GroupInfo",
    "InstanceInfo",
    "Options",
    "ReplaceActive",
    "RollState",
    "Strategy",
    "Timing",
    "dry_run_changes",
    "ensure_group_version",
    "execute",
    "is_current",
    "pending_state",
    "plan",
    "read_group",
    "read_state",
    "render",
    "render_pending",
    "replace_outdated",
    "resolve_version",
    "with_roles",
]
