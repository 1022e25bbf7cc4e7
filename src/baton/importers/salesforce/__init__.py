"""Salesforce Flow metadata (Orchestrator, ApprovalWorkflow, screen flows) -> Baton."""

from baton.importers.salesforce.project import import_salesforce
from baton.importers.salesforce.report import ImportReport

__all__ = ["ImportReport", "import_salesforce"]
