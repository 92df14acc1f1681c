"""together-reconcile: Together's Gorgias integration, as config-as-code."""

__version__ = "0.1.0"
