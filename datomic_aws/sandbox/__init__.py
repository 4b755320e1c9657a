"""The sandbox: an embedded AWS (moto, corrected where our flows depend on AWS's behaviour) that
runs emulated Datomic transactors, and the demo built on it. Needs the `sandbox` extra (moto).

Modules: `moto_fixes` (the corrections and Auto Scaling's own clock), `embedded` (the server, its
control API), `transactors` (the emulated transactors), `probe` (a peer's view of availability, the
InService poller), `demo` (the operator's loop, narrated), `serve` (the embedded AWS as a server an
operator's shell points at). Nothing here is imported by the product outside the `demo` and
`sandbox serve` commands, and nothing here talks to real AWS.
"""
