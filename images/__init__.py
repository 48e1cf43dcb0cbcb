"""Package data: the guest image recipes (tiny and debian), read through importlib.resources."""
