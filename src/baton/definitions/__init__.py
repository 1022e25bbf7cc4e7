"""YAML -> validated, frozen definition objects; every problem reported at once."""

KINDS = ("object", "orchestration", "calendar", "mailbox", "connection", "catalog", "fulfillment",
         "routing", "intake_form")
"""Every kind of definition, in the order messages list them: the validator, the loader and
the CLI's ``--kind`` take them from here (a light module: the CLI reads it at start-up)."""
