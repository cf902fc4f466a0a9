"""The `dnerv` subcommands (cli.py groups them): they parse options and print, nothing more."""
