# The plugin modules here are imported by the tests as plugins (`--plugin example_losses`), not collected.
collect_ignore_glob = ["*.py"]
