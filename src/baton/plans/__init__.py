"""Fulfillment plans: decomposition, scenarios, scope expansion, compensation."""
