// Nothing to call: the definitions in this target are for the static linker (nodispatch.c, sqlite.c).
