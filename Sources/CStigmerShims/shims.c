#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/seccomp.h>
#include "stigmer_shims.h"

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#endif
#ifndef PR_MDWE_REFUSE_EXEC_GAIN
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_memfd_secret
#define SYS_memfd_secret 447
#endif

int stigmer_set_dumpable(int dumpable) { return prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0); }
int stigmer_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

// Drops a read-only mapping's pages that still match the file. With no anonymous page in
// it, the whole range at once; else page by page from /proc/self/pagemap (bit 63: present,
// bit 61: a file page), keeping every private copy (a relocated page made read-only).
static long release_if_clean(int pagemap, unsigned long start, unsigned long end, int eligible, long anonymous_kb) {
    if (!eligible || end <= start) return 0;
    if (anonymous_kb == 0) return madvise((void *)start, end - start, MADV_DONTNEED) == 0 ? (long)(end - start) : 0;
    if (pagemap < 0) return 0;
    long page = sysconf(_SC_PAGESIZE), released = 0;
    unsigned long run = 0;
    for (unsigned long at = start; at <= end; at += (unsigned long)page) {
        uint64_t entry = 0;
        int clean = at < end && pread(pagemap, &entry, sizeof entry, (off_t)(at / (unsigned long)page * sizeof entry)) == sizeof entry
                    && (entry >> 63 & 1) && (entry >> 61 & 1);
        if (clean && !run) run = at;
        if (!clean && run) {
            if (madvise((void *)run, at - run, MADV_DONTNEED) == 0) released += (long)(at - run);
            run = 0;
        }
    }
    return released;
}

long stigmer_release_image(void) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return 0;
    exe[n] = 0;
    FILE *smaps = fopen("/proc/self/smaps", "re");
    if (!smaps) return 0;
    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    char line[PATH_MAX + 256];
    // The ranges are collected first and released last: code that runs after a release
    // (the smaps parsing, stdio, malloc_trim) would fault its pages straight back in, with
    // the kernel's fault-around mapping 64 kB for each.
    struct { unsigned long start, end; long anonymous; } ranges[16];
    int count = 0;
    unsigned long start = 0, end = 0;
    int eligible = 0;
    long anonymous = -1;
    for (int more = 1; more;) {
        more = fgets(line, sizeof line, smaps) != NULL;
        unsigned long s, e;
        char perms[8];
        int path = 0;
        int header = more && sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &s, &e, perms, &path) >= 3 && strchr(line, '-') < strchr(line, ' ');
        if (header || !more) {
            if (eligible && end > start && count < 16) {
                ranges[count].start = start, ranges[count].end = end, ranges[count].anonymous = anonymous;
                count++;
            }
            if (!more) break;
            char *name = path ? line + path : line + strlen(line);
            name[strcspn(name, "\n")] = 0;
            start = s, end = e, anonymous = -1;
            // The executable's read-only mappings (text, rodata) whose pages all still
            // match the file: a relocated page (RELRO, made read-only after the loader
            // wrote it) or any written page is the only copy of its data, and stays.
            eligible = strcmp(name, exe) == 0 && perms[1] != 'w';
        } else if (strncmp(line, "Anonymous:", 10) == 0) {
            anonymous = strtol(line + 10, NULL, 10);
        }
    }
    fclose(smaps);
    malloc_trim(0);
    long released = 0;
    for (int i = 0; i < count; i++) released += release_if_clean(pagemap, ranges[i].start, ranges[i].end, 1, ranges[i].anonymous);
    if (pagemap >= 0) close(pagemap);
    return released;
}

// The ignored signals, from /proc/self/status's SigIgn (bit n-1: signal n): one read
// instead of a sigaction call per signal (~64 system calls). Async-signal-safe: raw
// open/read, no stdio, no allocation. Returns 0, or -1 when /proc cannot tell (not mounted).
static int ignored_mask(uint64_t *mask) {
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[8192];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)n;
    close(fd);
    buf[len] = 0;
    const char *p = strstr(buf, "\nSigIgn:");
    if (!p) return -1;
    p += 8;
    while (*p == ' ' || *p == '\t') p++;
    uint64_t v = 0;
    int digits = 0;
    for (;; p++, digits++) {
        int d = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        if (d < 0) break;
        v = v << 4 | (uint64_t)d;
    }
    if (digits == 0) return -1;
    *mask = v;
    return 0;
}

static int is_ignored(int sig, uint64_t mask, int have_mask) {
    if (have_mask) return sig <= 64 && (mask >> (sig - 1) & 1);
    struct sigaction sa;
    return sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN;
}

int stigmer_ignored_signals(sigset_t *ignored) {
    sigemptyset(ignored);
    uint64_t mask = 0;
    int have_mask = ignored_mask(&mask) == 0;
    for (int sig = 1; sig < _NSIG; sig++) {
        if (is_ignored(sig, mask, have_mask)) sigaddset(ignored, sig);
    }
    return 0;
}

int stigmer_block_all_signals(sigset_t *previous) {
    sigset_t all;
    sigfillset(&all);
    return sigprocmask(SIG_BLOCK, &all, previous) == 0 ? 0 : -errno;
}

int stigmer_signalfd_all(void) {
    sigset_t all;
    sigfillset(&all);
    return signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
}

int stigmer_read_signal(int fd) {
    struct signalfd_siginfo info;
    ssize_t n = read(fd, &info, sizeof info);
    if (n == (ssize_t)sizeof info) return (int)info.ssi_signo;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    return n < 0 ? -errno : 0;
}

int stigmer_memfd_create(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int stigmer_memfd_secret(void) {
    long fd = syscall(SYS_memfd_secret, O_CLOEXEC);
    return fd < 0 ? -errno : (int)fd;
}

// Landlock, through raw syscalls (glibc has no wrappers). The attribute is passed as its
// first field only (handled_access_fs): every ABI accepts that size.
#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

int stigmer_landlock_abi(void) {
    long v = syscall(SYS_landlock_create_ruleset, NULL, 0, 1U /* LANDLOCK_CREATE_RULESET_VERSION */);
    return v < 0 ? -errno : (int)v;
}

int stigmer_landlock_create(uint64_t handled_fs) {
    uint64_t attr = handled_fs;
    long fd = syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    return fd < 0 ? -errno : (int)fd;
}

int stigmer_landlock_allow(int ruleset, int parent_fd, uint64_t access) {
    struct __attribute__((packed)) { uint64_t allowed_access; int32_t parent_fd; } rule = { access, parent_fd };
    return syscall(SYS_landlock_add_rule, ruleset, 1 /* LANDLOCK_RULE_PATH_BENEATH */, &rule, 0) == 0 ? 0 : -errno;
}

// Is path[0..len) a strict ancestor of one of the protected paths?
static int landlock_is_ancestor(const char *path, size_t len, const char *const *paths, int count) {
    for (int i = 0; i < count; i++) {
        size_t n = strlen(paths[i]);
        if (n > len && memcmp(paths[i], path, len) == 0 && (len == 1 || paths[i][len] == '/')) return 1;
    }
    return 0;
}

static int landlock_is_protected(const char *path, const char *const *paths, int count) {
    for (int i = 0; i < count; i++) if (strcmp(paths[i], path) == 0) return 1;
    return 0;
}

// Grants every entry of the directory `path` (a buffer of PATH_MAX, holding len bytes),
// except the protected paths, and walks down the ancestors of protected paths instead of
// granting them. Symlinks are not granted: what they point to is judged by its own place.
// A directory we cannot read grants nothing beneath it (more closed, not less). Entries
// come from getdents64 into a 4 KB buffer per level (opendir's is 32 KB and an fstat),
// on the heap: a deep home must not run the stack out.
struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

// The O_PATH descriptors a walk opened for its rules, closed together: one close_range
// per run of consecutive numbers (usually one run: the lowest free numbers, in order).
// A close per rule was a quarter of the walk's syscalls.
struct landlock_fds {
    int fd[64];
    int n;
};

static void landlock_fds_close(struct landlock_fds *b) {
    for (int i = 1; i < b->n; i++) {
        int fd = b->fd[i], j = i;
        for (; j > 0 && b->fd[j - 1] > fd; j--) b->fd[j] = b->fd[j - 1];
        b->fd[j] = fd;
    }
    for (int i = 0; i < b->n;) {
        int j = i;
        while (j + 1 < b->n && b->fd[j + 1] == b->fd[j] + 1) j++;
        // Every number in the run is one of ours (distinct, open, consecutive).
        if (j == i || syscall(SYS_close_range, b->fd[i], b->fd[j], 0) != 0) {
            for (int k = i; k <= j; k++) close(b->fd[k]);
        }
        i = j + 1;
    }
    b->n = 0;
}

static int landlock_walk(int ruleset, char *path, size_t len, const char *const *paths, int count,
                         uint64_t dir_access, uint64_t file_access, struct landlock_fds *opened) {
    enum { size = 4096 };
    char *buffer = malloc(size);
    if (!buffer) return 0;
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        free(buffer);
        return 0;
    }
    int rules = 0;
    long got;
    while ((got = syscall(SYS_getdents64, dfd, buffer, size)) > 0) {
        for (long offset = 0; offset < got;) {
            struct linux_dirent64 *entry = (struct linux_dirent64 *)(buffer + offset);
            offset += entry->d_reclen;
            const char *name = entry->d_name;
            if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) continue;
            // The entry's path, in the buffer after the directory's: "/name" or "DIR/name".
            size_t n = strlen(name), at = len == 1 ? 1 : len + 1, end = len == 1 ? 1 : len;
            // Longer than any resolved path: neither protected nor on the way to one.
            if (at + n < PATH_MAX) {
                if (len != 1) path[len] = '/';
                memcpy(path + at, name, n + 1);
                int skip = landlock_is_protected(path, paths, count);
                if (!skip && landlock_is_ancestor(path, at + n, paths, count)) {
                    rules += landlock_walk(ruleset, path, at + n, paths, count, dir_access, file_access, opened);
                    skip = 1;
                }
                path[end] = 0;
                if (skip) continue;
            }
            unsigned char type = entry->d_type;
            if (type == DT_UNKNOWN) {
                struct stat st;
                if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
                type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : DT_REG;
            }
            if (type == DT_LNK) continue;
            int fd = openat(dfd, name, O_PATH | O_CLOEXEC | O_NOFOLLOW);
            if (fd < 0 && errno == EMFILE && opened->n > 0) {
                landlock_fds_close(opened);
                fd = openat(dfd, name, O_PATH | O_CLOEXEC | O_NOFOLLOW);
            }
            if (fd < 0) continue;
            if (stigmer_landlock_allow(ruleset, fd, type == DT_DIR ? dir_access : file_access) == 0) rules++;
            opened->fd[opened->n++] = fd;
            if (opened->n == (int)(sizeof opened->fd / sizeof opened->fd[0])) landlock_fds_close(opened);
        }
    }
    close(dfd);
    free(buffer);
    return rules;
}

int stigmer_landlock_around(int ruleset, const char *const *paths, int count, uint64_t dir_access, uint64_t file_access) {
    char path[PATH_MAX] = "/";
    struct landlock_fds opened = { .n = 0 };
    int rules = landlock_walk(ruleset, path, 1, paths, count, dir_access, file_access, &opened);
    landlock_fds_close(&opened);
    return rules;
}

// Async-signal-safe only: plain syscalls, no allocation, no locks.
static int stigmer_prepare(const struct stigmer_launch *l, int spawned, const char **step) {
    if (spawned && l->new_process_group) {
        *step = "setpgid";
        if (setpgid(0, 0) != 0) return -errno;
        // Our own group in the terminal's foreground, as tini does: a Ctrl-C reaches the
        // child once, from the terminal, and not again through the supervisor. Signals are
        // still blocked here, so SIGTTOU cannot stop us for asking from the background.
        if (l->foreground_terminal >= 0) {
            *step = "tcsetpgrp";
            if (tcsetpgrp(l->foreground_terminal, getpid()) != 0 && errno != ENOTTY && errno != ENXIO) return -errno;
        }
    }
    if (spawned && l->parent > 0) {
        // The child must not outlive a supervisor that is SIGKILLed: it would run on,
        // unsupervised, with the secrets. Checked after setting it: the parent may have
        // died before, and then no signal would ever come.
        *step = "PR_SET_PDEATHSIG";
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return -errno;
        if (getppid() != l->parent) return -ESRCH;
    }
    if (l->reset_signals) {
        *step = "resetting signals";
        // execve resets handlers by itself; what the launcher ignored that it had not
        // inherited ignored goes back to default. Inherited ignores stay (nohup, tini's
        // sigconf): a child of `nohup stigmer-exec run` ignores SIGHUP as it would under env.
        uint64_t mask = 0;
        int have_mask = ignored_mask(&mask) == 0;
        for (int sig = 1; sig < _NSIG; sig++) {
            if (sig == SIGKILL || sig == SIGSTOP) continue;
            if (!is_ignored(sig, mask, have_mask)) continue;
            if (l->inherited_ignored && sigismember(l->inherited_ignored, sig) == 1) continue;
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = SIG_DFL;
            // EINVAL: a number glibc keeps for itself (its thread signals), left alone.
            if (sigaction(sig, &sa, NULL) != 0 && errno != EINVAL) return -errno;
        }
        sigset_t none;
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) return -errno;
    }
    if (l->cwd) {
        *step = "changing to the working directory";
        if (chdir(l->cwd) != 0) return -errno;
    }
    if (l->address_space_limit > 0) {
        *step = "setting the memory limit (RLIMIT_AS)";
        struct rlimit r = { (rlim_t)l->address_space_limit, (rlim_t)l->address_space_limit };
        if (setrlimit(RLIMIT_AS, &r) != 0) return -errno;
    }
    if (spawned && l->stdout_fd >= 0) {
        *step = "dup2 stdout";
        if (dup2(l->stdout_fd, 1) < 0) return -errno;
    }
    if (spawned && l->stderr_fd >= 0) {
        *step = "dup2 stderr";
        if (dup2(l->stderr_fd, 2) < 0) return -errno;
    }
    if (l->mdwe) {
        *step = "PR_SET_MDWE";
        if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0 && !(l->mdwe < 0 && errno == EINVAL)) return -errno;
    }
    if (l->no_new_privs || l->filter_count > 0 || l->landlock_ruleset >= 0) {
        *step = "PR_SET_NO_NEW_PRIVS";
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -errno;
    }
    if (l->landlock_ruleset >= 0) {
        // After no_new_privs (Landlock requires it unprivileged), before the filters.
        *step = "landlock_restrict_self";
        if (syscall(SYS_landlock_restrict_self, l->landlock_ruleset, 0) != 0) return -errno;
    }
    // The filters last: nothing after them but execve.
    for (int i = 0; i < l->filter_count; i++) {
        *step = "loading the seccomp filter";
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &l->filters[i], 0, 0) != 0) return -errno;
    }
    *step = "execve";
    return 0;
}

int stigmer_exec(const struct stigmer_launch *l, const char **step) {
    int rc = stigmer_prepare(l, 0, step);
    if (rc != 0) return rc;
    execve(l->path, l->argv, l->envp);
    return -errno;
}

pid_t stigmer_spawn(const struct stigmer_launch *l, const char **step) {
    int report[2];
    *step = "pipe";
    if (pipe2(report, O_CLOEXEC) != 0) return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(report[0]);
        close(report[1]);
        *step = "fork";
        return -e;
    }
    if (pid == 0) {
        close(report[0]);
        const char *failed = "execve";
        int rc = stigmer_prepare(l, 1, &failed);
        if (rc == 0) {
            execve(l->path, l->argv, l->envp);
            rc = -errno;
        }
        // Report the errno and which step failed (as an index into nothing: the
        // string is static, so its address is valid in the parent too after fork).
        struct { int err; const char *step; } msg = { -rc, failed };
        ssize_t unused = write(report[1], &msg, sizeof msg);
        (void)unused;
        _exit(127);
    }
    close(report[1]);
    struct { int err; const char *step; } msg;
    ssize_t n;
    do { n = read(report[0], &msg, sizeof msg); } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof msg) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        *step = msg.step;
        return -msg.err;
    }
    return pid;  // EOF: the pipe closed on a successful execve.
}
