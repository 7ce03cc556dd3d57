// SQLite's compiled-in extensions, left out of the static launcher.
//
// Debian's libsqlite3 is built with FTS3/4, FTS5, R*Tree, dbstat and the sqlite_stmt
// virtual table, and every sqlite3_open_v2 registers them all: ~30 µs of each launch here
// (their code and data are paged in, their modules and functions allocated and hashed;
// benchmarks/RESULTS.md). No store of ours uses a virtual table. The library's main.o
// calls these five by name from its table of built-in extensions; defined here, the
// static linker takes them instead of pulling fts3.o, fts5.o, rtree.o, dbstat.o and
// stmt.o out of the archive, and the open registers nothing. A statement that needs one
// of these modules fails with SQLite's "no such module". If the library is ever built
// differently (the amalgamation keeps these static), these are simply unused; if
// another member needs one of those objects, the link fails with a duplicate definition:
// at build time.
//
// Only in the fully static launcher (`make launcher` defines STIGMER_STATIC_LAUNCHER):
// other builds link the shared library, whose own references these cannot replace.
#include "stigmer_static.h"

#ifdef STIGMER_STATIC_LAUNCHER
typedef struct sqlite3 sqlite3;

int sqlite3Fts3Init(sqlite3 *db) { (void)db; return 0; }
int sqlite3Fts5Init(sqlite3 *db) { (void)db; return 0; }
int sqlite3RtreeInit(sqlite3 *db) { (void)db; return 0; }
int sqlite3DbstatRegister(sqlite3 *db) { (void)db; return 0; }
int sqlite3StmtVtabInit(sqlite3 *db) { (void)db; return 0; }
#endif
