#ifndef STIGMER_SHIMS_H
#define STIGMER_SHIMS_H
// Only what Swift cannot express: variadic prctl, the steps between fork and execve,
// where only async-signal-safe C may run, and the supervisor's release of its own pages
// (which must not fault in the Swift code it is dropping). Every symbol carries the
// stigmer_ prefix.
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include <signal.h>

int stigmer_set_dumpable(int dumpable);
int stigmer_set_child_subreaper(void);

/// As PID 1 (a container's first process), the kernel drops every signal whose
/// disposition is the default: a launcher waiting for its context would outlive
/// `docker stop`/`crun kill` until SIGKILL. Makes SIGTERM, SIGINT and SIGHUP end the
/// process (status 128+N), where they are at the default; execve resets them.
void stigmer_exit_on_termination_signals(void);
// A supervisor, once its child runs, drops the pages of its own executable it touched while
// launching (read-only mappings only; they fault back in from the page cache if needed) and
// trims the heap. Returns how many bytes of mappings were released.
long stigmer_release_image(void);
// The signals whose disposition is SIG_IGN now (call first thing: what was inherited).
int stigmer_ignored_signals(sigset_t *ignored);
// Blocks every signal; the previous mask in *previous. 0 or -errno.
int stigmer_block_all_signals(sigset_t *previous);

// The last steps before execve, in this fixed order (SECURITY.md):
//   (spawn) optional new process group, made the terminal's foreground group,
//   (spawn) PR_SET_PDEATHSIG(SIGKILL), checked against the parent's death,
//   signal mask emptied, dispositions the launcher ignored back to default (inherited
//   ignores kept), optional working directory, optional RLIMIT_AS,
//   optional dup2 of stdout/stderr (output masking),
//   PR_SET_MDWE (strict) when asked, no_new_privs, the Landlock ruleset, each seccomp
//   filter, execve.
struct stigmer_launch {
    const char *path;
    char *const *argv;
    char *const *envp;
    const struct sock_fprog *filters;  // loaded in order (stacked); may be NULL
    int filter_count;
    int mdwe;              // 1: PR_SET_MDWE(PR_MDWE_REFUSE_EXEC_GAIN); -1 tolerated EINVAL
    int no_new_privs;      // 1: set it (always when a filter is given)
    int new_process_group; // 1: setpgid(0, 0) (spawn only)
    long long address_space_limit; // > 0: RLIMIT_AS soft and hard
    int stdout_fd;         // >= 0: dup2 onto 1 (spawn only)
    int stderr_fd;         // >= 0: dup2 onto 2 (spawn only)
    int reset_signals;     // 1: empty mask, default dispositions (but inherited ignores); 2: empty mask only
    const char *cwd;       // non-NULL: chdir before the filters (working_dir)
    const sigset_t *inherited_ignored; // may be NULL: no ignore was inherited
    int foreground_terminal; // >= 0 (spawn, new group): tcsetpgrp(this fd, child)
    pid_t parent;          // > 0 (spawn): die with this parent (PR_SET_PDEATHSIG)
    int landlock_ruleset;  // >= 0: landlock_restrict_self after no_new_privs, before the filters
    int private_network;   // 1: a network namespace of its own (loopback only), before the working directory
};

// Landlock (raw syscalls): the highest ABI, or -errno (ENOSYS/EOPNOTSUPP: none).
int stigmer_landlock_abi(void);
// A ruleset handling these filesystem rights (close-on-exec), or -errno.
int stigmer_landlock_create(uint64_t handled_fs);
// The same, also handling these network rights (ABI >= 4; 0: none) and scoped (ABI >= 6:
// 1 abstract Unix sockets, 2 signals; 0: none), or -errno.
int stigmer_landlock_create_scoped(uint64_t handled_fs, uint64_t handled_net, uint64_t scoped);
// Allows `access` (bind 1, connect 2) for one TCP port. 0 or -errno.
int stigmer_landlock_allow_port(int ruleset, uint64_t access, uint64_t port);
// Allows beneath `path` (symlinks followed): dir_access for a directory, file_access for
// anything else; *is_dir (may be NULL) says which it was. 0 or -errno.
int stigmer_landlock_allow_path(int ruleset, const char *path, uint64_t dir_access, uint64_t file_access, int *is_dir);
// Allows rights[i] beneath each paths[i] (rights[i] & file_mask for a file), around the
// protected paths (absolute, resolved) inside it; status[i]: the rules added (0: none
// needed), -errno, or STIGMER_INSIDE_PROTECTED (it lies inside a protected path: nothing
// added). Returns the rules added, or -ENOMEM.
// status[i] must be 1 on input for a tree a flag named (resolved even when a file), else 0.
#define STIGMER_INSIDE_PROTECTED (-100000)
int stigmer_landlock_allow_trees(int ruleset, const char *const *paths, const uint64_t *rights, int count,
                                 uint64_t file_mask, const char *const *protected, int pcount, int *status);
// Other names of `paths` (absolute, resolved): through every other mount of the same
// filesystem (device) whose root holds them (checked to be the same file), and the mount
// points of mounts that show something inside them, from /proc/self/mountinfo.
// NUL-separated in `out`; returns the bytes used, or (size_t)-1 when `out` is too small.
size_t stigmer_mount_aliases(const char *const *paths, int count, char *out, size_t size);
// The directories /etc/ld.so.conf names (following includes), NUL-separated, in `out`;
// returns the bytes used.
size_t stigmer_ld_so_conf_dirs(char *out, size_t size);
// A memfd (close-on-exec, not executable where the kernel has MFD_NOEXEC_SEAL, number >= 3)
// holding `bytes`, sealed against writing, growing, shrinking and further seals. fd or -errno.
int stigmer_sealed_memfd(const char *name, const void *bytes, size_t count);
// Allows `access` beneath the file or directory open at parent_fd (O_PATH). 0 or -errno.
int stigmer_landlock_allow(int ruleset, int parent_fd, uint64_t access);
// Allows everything below `root` (absolute, resolved, a directory; "/" for the default
// isolation) around the protected paths (absolute, resolved): every entry of each of their
// ancestor directories, except the way down to a protected path — directories with
// dir_access, the rest with file_access. Returns the rules added.
int stigmer_landlock_around_from(int ruleset, const char *root, const char *const *paths, int count,
                                 uint64_t dir_access, uint64_t file_access);

// Runs the steps in this process and execve's. Returns only on failure: -errno, with
// *failed_step naming the step (a static string).
int stigmer_exec(const struct stigmer_launch *launch, const char **failed_step);

// fork; the child runs the same steps. Returns the pid once the child has exec'd, or
// -errno (and *failed_step) if any step failed in the child — reported over a
// close-on-exec pipe, so success means the new program is running.
pid_t stigmer_spawn(const struct stigmer_launch *launch, const char **failed_step);

// A close-on-exec signalfd for every signal (they must already be blocked).
int stigmer_signalfd_all(void);
// Reads one signal from a signalfd: its number, 0 when none is pending, -errno.
int stigmer_read_signal(int fd);

// memfd_create(name, MFD_CLOEXEC), or -1 with errno.
int stigmer_memfd_create(const char *name);

// memfd_secret(2), or -errno (ENOSYS where the kernel lacks or disables it).
int stigmer_memfd_secret(void);
#endif
