"""The application layer: one function per command (or command family), on specs and documents.

- inputs.py: the two properties files of an environment, loaded and cross-checked once.
- documents.py: the template document (`Template`) and reading a template file.
- template.py: create-cf-template (load, render once, write when the bytes change).
- stacks.py: create-cf-stack, update-stack, delete-cf-stack as the CLI calls them.
- status.py: status (the stack, its group and instances, template drift).
- ensure_transactor.py, ensure_cf.py: ensure-transactor and ensure-cf (read every resource once,
  plan its operations over resources/, then converge; apply uses their plan and converge steps).
- apply.py: apply DIR, the whole sequence on one folder.
- session.py: the one session factory of a run (its AwsContexts, the folder lock).
- help.py, failures.py, signals.py: the CLI's words, what its error funnel makes of an untranslated
  exception, and its signal handling, kept out of cli.py so that it stays a thin click layer.

File reads and writes happen here, at the edges; the library below (template.py, stack/,
resources/) works on values in memory. It must not print or import click: results go
back to cli.py as `Result`s, progress through callbacks.
"""
