"""Validated, typed views of the operator's properties files (see common.py for the rules)."""
