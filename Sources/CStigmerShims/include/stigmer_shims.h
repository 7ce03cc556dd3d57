#ifndef STIGMER_SHIMS_H
#define STIGMER_SHIMS_H
// Only what Swift cannot express: variadic prctl. Every symbol carries the stigmer_ prefix.
int stigmer_set_dumpable(int dumpable);
int stigmer_set_no_new_privs(void);
int stigmer_set_child_subreaper(void);
#endif
