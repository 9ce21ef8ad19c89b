"""The `newsletter` command: console.py is its one entry point; commands.py the command
group, each command defined once in the module of the capability it operates."""
