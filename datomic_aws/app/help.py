"""The words of `datomic-aws --help` and of each command's --help (cli.py attaches them).

Data only: no click import, no logic.
"""

from __future__ import annotations

HELP: dict[str, str] = {
    "ensure-transactor": """\
Ensure the table, roles, log bucket and stored configuration of a transactor.

    Validates INPUT, converges AWS, and writes the generated names back into OUTPUT (default:
    INPUT, in place), touching only the lines whose values change.

    \b
    Example:
      datomic-aws ensure-transactor aws/prod/transactor.properties
      datomic-aws ensure-transactor --dry-run --detailed-exitcode aws/prod/transactor.properties
""",
    "ensure-cf": """\
Ensure a transactor's network: VPC, subnets, security group, JVM sizing.

    Validates INPUT (instance type offered in the region, Xmx fits in RAM, subnets in the VPC),
    converges the security group's TCP 4334 rules, and writes the VPC, subnets, group id, java-xmx,
    datomic-version and stack name back into OUTPUT (default: INPUT).

    \b
    Example:
      datomic-aws ensure-cf aws/prod/cf.properties
      datomic-aws ensure-cf --dry-run aws/prod/cf.properties
""",
    "create-cf-template": """\
Write the CloudFormation template: pure, no AWS call, deterministic.

    Reads TRANSACTOR_PROPS and CF_PROPS and writes OUTPUT_JSON (only when its bytes change). The
    template holds no transactor configuration and no secret: instances read the configuration
    from SSM at boot; its SHA-256 is embedded so that a configuration change rolls the instances.

    \b
    Example:
      datomic-aws create-cf-template aws/prod/transactor.properties aws/prod/cf.properties aws/prod/cf.json
""",
    "create-cf-stack": """\
Create the stack, with termination protection, and wait for it.

    Creates stack STACK_NAME in REGION from TEMPLATE_JSON. The template goes through the tool's templates bucket (TemplateURL) and a change set. An
    existing stack with the same template is left alone; a different template is refused (use
    update-stack).

    \b
    Example:
      datomic-aws create-cf-stack us-east-1 datomic-prod aws/prod/cf.json
""",
    "update-stack": """\
Update the stack, then replace the instances on an old launch template.

    Updates stack STACK_NAME in REGION to TEMPLATE_JSON through a change set, then replaces every
    instance not on the launch template version the stack declares. The default surge strategy raises the group by one, waits until the new transactor is in
    service (listening on 4334), then stops one old instance; the number of in-service transactors
    never drops below the group size. A rerun finishes an interrupted replacement. --dry-run shows
    the change set (created, described and deleted) and the instances that would be replaced.
    A stack without our tags is refused unless --adopt; one tagged for another system always is.
    A stack made by Datomic's bin/datomic is migrated under --adopt: a new group is in service
    before the old LaunchGroup is removed.

    \b
    Example:
      datomic-aws update-stack us-east-1 datomic-prod aws/prod/cf.json
      datomic-aws update-stack --dry-run us-east-1 datomic-prod aws/prod/cf.json
""",
    "delete-cf-stack": """\
Delete the stack (lifting termination protection) and wait until it is gone.

    Deletes stack STACK_NAME in REGION, which stops the transactors. Never touches the DynamoDB table, the roles, the buckets or the SSM
    configuration parameter: they live outside the stack. Only a stack datomic-aws manages is
    deleted: one without our tags, or tagged for another system, is refused.

    \b
    Example:
      datomic-aws delete-cf-stack us-east-1 datomic-prod --yes
""",
    "apply": """\
Run the whole sequence for one environment folder, or several side by side.

    ensure-transactor DIR/transactor.properties, ensure-cf DIR/cf.properties, create-cf-template
    into DIR/cf.json, then create-cf-stack or update-stack (with replacement) for the stack named
    by aws-stack-name in cf.properties. DIR defaults to the current folder. DIR... may name
    several folders (one system each): every folder is checked first, then they run --jobs at a
    time; one failing does not stop the others; a summary table ends the output, and the exit code
    is the worst of the folders' (130, 1, 2, 3, 0 in that order).

    \b
    Example:
      datomic-aws apply aws/prod
      datomic-aws apply --dry-run --detailed-exitcode aws/prod
      cd aws/prod && datomic-aws apply
      datomic-aws apply aws/prod aws/staging aws/dev --jobs 2
""",
    "completion": """\
Print the shell completion script for bash, zsh or fish.

    SHELL is bash, zsh or fish. Load the script from the shell's startup file (README: Shell
    completion); commands, options and their choices then complete with Tab.

    \b
    Example:
      eval "$(datomic-aws completion bash)"     (in ~/.bashrc)
      eval "$(datomic-aws completion zsh)"      (in ~/.zshrc, after compinit)
      datomic-aws completion fish > ~/.config/fish/completions/datomic-aws.fish
""",
    "demo": """\
Run the whole loop against an embedded AWS (moto): no account needed.

    moto listens on 127.0.0.1 inside the process. Needs the sandbox extra: pip install 'datomic-aws[sandbox]'.

    \b
    Example:
      datomic-aws demo
      datomic-aws demo --dir /tmp/datomic-demo
""",
    "epilog": "Docs: README.md. Exit codes: 0 ok, 1 failure, 2 invalid input, 3 changes pending "
    "(--dry-run --detailed-exitcode; status: out of sync), 130 interrupted.",
    "sandbox": """\
The embedded AWS (moto, corrected) for trying your own files.

    \b
    Example:
      datomic-aws sandbox serve --transactors > sandbox.env
""",
    "sandbox serve": """\
Serve the embedded AWS on 127.0.0.1 and print the environment that points a shell at it.

    Prints export lines (--output json: one JSON object) with the endpoint and fake credentials,
    then serves until Ctrl-C or SIGTERM; its state is gone then. Run the operator loop on a copy
    of your files from another shell. Needs the sandbox extra: pip install 'datomic-aws[sandbox]'.

    \b
    Example:
      datomic-aws sandbox serve --transactors > sandbox.env
      . ./sandbox.env && datomic-aws apply aws/try     (in another shell)
""",
    "datomic-aws": """\
Provision and update the AWS side of a Datomic Pro transactor, idempotently.

    \b
    The loop, for one environment folder:
      datomic-aws ensure-transactor aws/prod/transactor.properties
      datomic-aws ensure-cf aws/prod/cf.properties
      git diff aws/prod && git commit -am "datomic: ensure"
""",
    "status": """\
Show the stack, its last event, the group and each of its instances.

    Read-only: stack STACK_NAME in REGION, its status and last event, the group's sizes and
    suspended processes, and each instance with the Datomic role it publishes (active, standby,
    - when none) and its launch template version, current or outdated; the configuration the
    instances run (version and keyed digest) against SSM's; for ddb, the age of the last
    heartbeat. --template compares a local template with the deployed one, --transactor the
    local transactor file's configuration with SSM's.

    Exit codes for scripts: 0 when the stack, the template (with --template) and the instances
    are in sync and the configuration has not drifted; 3 when the stack is missing or in
    progress, the local template differs from the deployed one, the configuration drifted, or an
    instance is outdated (the JSON's "out_of_sync" says which).

    \b
    Example:
      datomic-aws status us-east-1 datomic-prod --template aws/prod/cf.json \\
          --transactor aws/prod/transactor.properties
""",
}

# `datomic-aws --help` lists the commands in the order of the operator's loop.
LOOP_ORDER = (
    "ensure-transactor",
    "ensure-cf",
    "create-cf-template",
    "create-cf-stack",
    "update-stack",
    "apply",
    "status",
    "delete-cf-stack",
    "demo",
    "sandbox",
    "completion",
)

# Each option's help, by its long name.
OPTIONS: dict[str, str] = {
    "--profile": "AWS profile (default: AWS_PROFILE or the default chain).",
    "--endpoint-url": "AWS endpoint for every service (moto, LocalStack); AWS_ENDPOINT_URL also works.",
    "--output": "json: exactly one JSON document on stdout. Global options go before or after the command.",
    "--debug": "On errors, add the traceback and the AWS request id.",
    "--no-color": "No colour, even on a terminal (so does a non-empty NO_COLOR).",
    "--lock-timeout": "How long to wait for another run working on the same folder or stack (0: refuse at once).",
    "--recreate-failed stack": (
        "Delete and create again a stack left in ROLLBACK_COMPLETE (only one carrying our tags)."
    ),
    "--adopt stack": (
        "Take over a stack without our tags after showing its change set (and migrate a stack "
        "made by Datomic's bin/datomic). Never one tagged for another system."
    ),
    "--recreate-failed": "Recreate a stack left in ROLLBACK_COMPLETE (only one carrying our tags).",
    "--adopt": "Take over resources that have the derived names but not our tags.",
    "--yes": "Do not ask for confirmation.",
    "--template": "A local template to compare with the deployed one.",
    "--transactor": "The local transactor file: its configuration is compared with SSM's, and "
    "its DynamoDB table holds the heartbeat.",
    "--dir": "Folder for the demo's files (default: a new temporary folder, kept).",
    "--port": "Port on 127.0.0.1 (default 0: a free one, shown in the exports).",
    "--transactors": "Run an emulated Datomic transactor on every instance Auto Scaling launches.",
    "--poll-interval": "How often to poll AWS while waiting.",
    "--timeout": "Give up waiting after this long (AWS carries on; `status` shows where it is).",
    "--no-replace": "Update the stack only; leave the running instances as they are.",
    "--strategy": "surge: start each replacement before stopping an old instance (no gap). terminate: Datomic's old way, with downtime.",
    "--detailed-exitcode": "With --dry-run: exit 3 when changes are pending, 0 when there are none.",
    "--jobs": "With several folders: how many run at once (default: up to 4).",
    "--dry-run": "Plan only: read AWS, print the changes and the diff of files; write nothing.",
}
