"""YAML -> validated, frozen definition objects; every problem reported at once."""
