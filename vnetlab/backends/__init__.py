"""Backends: one module per kind of switch, hypervisor or image."""
