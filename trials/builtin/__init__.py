"""Built-in trainers, reachable as ``builtin:NAME`` entrypoints."""
