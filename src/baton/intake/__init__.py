"""Intake: e-mail and forms become records."""
