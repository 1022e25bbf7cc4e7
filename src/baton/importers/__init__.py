"""Importers: other products' process definitions -> a Baton project folder."""
