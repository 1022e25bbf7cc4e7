"""The pure engine core: statuses, transition tables, decide()."""
