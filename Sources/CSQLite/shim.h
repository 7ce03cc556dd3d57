#include <sqlite3.h>

// For a single-threaded process that opens the store once and leaves (the launch): no
// lookaside buffer (120 KB) and no page-cache bulk (20 pages), which SQLite initialises at
// open by writing into every page of them — a page fault each, for memory a launch never
// uses; and no mutexes (one thread) or memory statistics (a mutex around every malloc).
// Must come before the first sqlite3_open; later SQLite refuses it (SQLITE_MISUSE),
// harmlessly.
static inline int stigmer_sqlite3_configure_short_lived(void) {
    int rc = sqlite3_config(SQLITE_CONFIG_SINGLETHREAD);
    if (rc == SQLITE_OK) rc = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    if (rc == SQLITE_OK) rc = sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 0, 0);
    if (rc == SQLITE_OK) rc = sqlite3_config(SQLITE_CONFIG_PAGECACHE, (void *)0, 0, 0);
    return rc;
}
