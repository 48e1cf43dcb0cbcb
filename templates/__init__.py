"""Package data: the domain XML templates (jinja2), read through importlib.resources."""
