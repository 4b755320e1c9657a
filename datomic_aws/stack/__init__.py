"""CloudFormation stack lifecycle, one module per responsibility; this file only re-exports.

- status.py: the 23 statuses, their classification, ownership from tags, and `decide`, the one
  decision table of create, update and delete (pure).
- document.py: `StackTemplate`, a template's text and its document, parsed once per operation.
- read.py: `read_stack`, the deployed template, the recognition of a Datomic-era stack.
- events.py: the event cursor and `wait_for_stack`, with `Waiting` (timeouts, progress sink).
- transport.py: the template's key, URL and upload to the templates bucket (whose ensure is
  `resources/s3.ensure_templates_bucket`), and the writes a dry run may make.
- changesets.py: change sets with deterministic names and tokens, waiting, their changes.
- run.py: one operation's clients, deadline and shared steps (settle, group ownership, delete).
- migrate.py: the migration of a stack made by Datomic's bin/datomic to our template.
- operations.py: `create_stack`, `update_stack` (one option list, `StackOptions`),
  `delete_stack`, `check_ownership`.

This file must hold no logic: importers keep
`from datomic_aws import stack; stack.update_stack(...)`.
"""

from __future__ import annotations

from datomic_aws.resources.s3 import ensure_templates_bucket
from datomic_aws.stack.events import (
    Waiting,
    format_event,
    wait_for_stack,
)
from datomic_aws.stack.migrate import (
    LEGACY_PREFIX,
    bridge_template,
    plans_migration,
)
from datomic_aws.stack.operations import (
    check_ownership,
    create_stack,
    delete_stack,
    update_stack,
)
from datomic_aws.stack.read import (
    Legacy,
    StackInfo,
    deployed_template,
    read_stack,
    template_matches,
)
from datomic_aws.stack.status import (
    FAILURE_STATUSES,
    STATUS_STATES,
    Intent,
    Owner,
    StackState,
    Verdict,
    classify,
    decide,
    owner_of,
)
from datomic_aws.stack.transport import (
    DRY_RUN_WRITES,
    MAX_TEMPLATE_BODY,
    dry_run_writes,
    template_digest,
    template_key,
    template_url,
    upload_template,
)

__all__ = [
    "DRY_RUN_WRITES",
    "FAILURE_STATUSES",
    "LEGACY_PREFIX",
    "MAX_TEMPLATE_BODY",
    "STATUS_STATES",
    "Intent",
    "Legacy",
    "Owner",
    "StackInfo",
    "StackState",
    "Verdict",
    "Waiting",
    "bridge_template",
    "check_ownership",
    "classify",
    "create_stack",
    "decide",
    "delete_stack",
    "deployed_template",
    "dry_run_writes",
    "ensure_templates_bucket",
    "format_event",
    "owner_of",
    "plans_migration",
    "read_stack",
    "template_digest",
    "template_key",
    "template_matches",
    "template_url",
    "update_stack",
    "upload_template",
    "wait_for_stack",
]
