"""CLI subcommands, one module each; dsaudit.cli imports them lazily."""
