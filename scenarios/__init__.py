"""Package data: the built-in scenarios (lessons), read through importlib.resources."""
