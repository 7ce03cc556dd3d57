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
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <sched.h>
#include <glob.h>
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

static void stigmer_exit_on_signal(int sig) { _exit(128 + sig); }

void stigmer_exit_on_termination_signals(void) {
    static const int signals[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        struct sigaction old;
        if (sigaction(signals[i], NULL, &old) != 0 || old.sa_handler != SIG_DFL) continue;
        struct sigaction action = {0};
        action.sa_handler = stigmer_exit_on_signal;
        sigemptyset(&action.sa_mask);
        sigaction(signals[i], &action, NULL);
    }
}

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

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

int stigmer_sealed_memfd(const char *name, const void *bytes, size_t count) {
    // Not executable where the kernel can say so (Linux >= 6.3), sealable, close-on-exec.
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL) fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -errno;
    // Above the standard descriptors, so it is never the child's stdin/stdout/stderr.
    if (fd < 3) {
        int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        int e = errno;
        close(fd);
        if (moved < 0) return -e;
        fd = moved;
    }
    const char *p = bytes;
    size_t left = count;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            return -e;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

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

int stigmer_landlock_create(uint64_t handled_fs) { return stigmer_landlock_create_scoped(handled_fs, 0, 0); }

int stigmer_landlock_create_scoped(uint64_t handled_fs, uint64_t handled_net, uint64_t scoped) {
    // The attribute's size says which fields we fill: ABI 1-3 know only the first, 4-5
    // the first two.
    uint64_t attr[3] = { handled_fs, handled_net, scoped };
    size_t size = scoped ? sizeof attr : handled_net ? 2 * sizeof attr[0] : sizeof attr[0];
    long fd = syscall(SYS_landlock_create_ruleset, attr, size, 0);
    return fd < 0 ? -errno : (int)fd;
}

int stigmer_landlock_allow_port(int ruleset, uint64_t access, uint64_t port) {
    struct { uint64_t allowed_access; uint64_t port; } rule = { access, port };
    return syscall(SYS_landlock_add_rule, ruleset, 2 /* LANDLOCK_RULE_NET_PORT */, &rule, 0) == 0 ? 0 : -errno;
}

int stigmer_landlock_allow_path(int ruleset, const char *path, uint64_t dir_access, uint64_t file_access, int *is_dir) {
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (is_dir) *is_dir = S_ISDIR(st.st_mode);
    int rc = stigmer_landlock_allow(ruleset, fd, S_ISDIR(st.st_mode) ? dir_access : file_access);
    close(fd);
    return rc;
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

int stigmer_landlock_around_from(int ruleset, const char *root, const char *const *paths, int count,
                                 uint64_t dir_access, uint64_t file_access) {
    char path[PATH_MAX];
    size_t len = strlen(root);
    if (len == 0 || len >= PATH_MAX) return 0;
    memcpy(path, root, len + 1);
    struct landlock_fds opened = { .n = 0 };
    int rules = landlock_walk(ruleset, path, len, paths, count, dir_access, file_access, &opened);
    landlock_fds_close(&opened);
    return rules;
}

// The sandbox's trees, in one pass: per path an O_PATH open (symlinks followed), its
// resolved name from /proc/self/fd (one readlink, where realpath(3) takes one lstat and one
// readlink per component), then a rule — or, when a protected path lies inside, the walk
// around it; nothing when it lies inside a protected path, or when an earlier tree was the
// same with at least these rights.
int stigmer_landlock_allow_trees(int ruleset, const char *const *paths, const uint64_t *rights, int count,
                                 uint64_t file_mask, const char *const *protected, int pcount, int *status) {
    // What each earlier tree was (device, inode, rights): the same directory twice (/lib
    // and /usr/lib where /lib is a link) is one rule.
    struct seen_tree { dev_t dev; ino_t ino; uint64_t rights; } *seen = calloc((size_t)count, sizeof *seen);
    if (!seen) return -ENOMEM;
    struct landlock_fds opened = { .n = 0 };
    int total = 0;
    for (int i = 0; i < count; i++) {
        // On input, 1 marks a tree someone named (a flag's): resolved even when a file.
        int named = status[i] == 1;
        status[i] = 0;
        int fd = open(paths[i], O_PATH | O_CLOEXEC);
        if (fd < 0 && errno == EMFILE && opened.n > 0) {
            landlock_fds_close(&opened);
            fd = open(paths[i], O_PATH | O_CLOEXEC);
        }
        if (fd < 0) {
            status[i] = -errno;
            continue;
        }
        // Closed together, one close_range per run of numbers.
        opened.fd[opened.n++] = fd;
        if (opened.n == (int)(sizeof opened.fd / sizeof opened.fd[0])) landlock_fds_close(&opened);
        struct stat st;
        if (fstat(fd, &st) != 0) {
            status[i] = -errno;
            continue;
        }
        int duplicate = 0;
        for (int j = 0; j < i && !duplicate; j++) {
            duplicate = seen[j].ino == st.st_ino && seen[j].dev == st.st_dev && (seen[j].rights & rights[i]) == rights[i];
        }
        if (duplicate) continue;
        seen[i] = (struct seen_tree){ st.st_dev, st.st_ino, rights[i] };
        // The resolved name decides what is inside what. A file of the base set (fixed
        // system paths) cannot hold a protected path, and only a symlink placed by root
        // could take it into one: it keeps its own name, and saves the readlink.
        char real[PATH_MAX], link[32];
        if (named || S_ISDIR(st.st_mode)) {
            snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
            ssize_t n = readlink(link, real, sizeof real - 1);
            if (n > 0 && real[0] == '/') {
                real[n] = 0;
            } else if (!realpath(paths[i], real)) {
                status[i] = -errno;
                continue;
            }
        } else {
            size_t n = strlen(paths[i]);
            if (n >= sizeof real) {
                status[i] = -ENAMETOOLONG;
                continue;
            }
            memcpy(real, paths[i], n + 1);
        }
        size_t len = strlen(real);
        int inside = 0, around = 0;
        for (int p = 0; p < pcount; p++) {
            size_t pl = strlen(protected[p]);
            if (len >= pl && memcmp(real, protected[p], pl) == 0 && (real[pl] == 0 || real[pl] == '/')) inside = 1;
            else if (S_ISDIR(st.st_mode) && pl > len && memcmp(protected[p], real, len) == 0 && (len == 1 || protected[p][len] == '/')) around = 1;
        }
        if (inside) {
            status[i] = STIGMER_INSIDE_PROTECTED;
            seen[i].rights = 0;
            continue;
        }
        uint64_t r = S_ISDIR(st.st_mode) ? rights[i] : rights[i] & file_mask;
        if (around) {
            status[i] = stigmer_landlock_around_from(ruleset, real, protected, pcount, r, r & file_mask);
        } else {
            int rc = stigmer_landlock_allow(ruleset, fd, r);
            status[i] = rc == 0 ? 1 : rc;
        }
        if (status[i] > 0) total += status[i];
    }
    landlock_fds_close(&opened);
    free(seen);
    return total;
}

// The directories /etc/ld.so.conf names, following `include` lines (globs), as
// NUL-terminated strings one after another in `out`. Returns the bytes used (a list cut
// short when `out` is full), 0 when there is no such file.
static size_t ld_so_conf(const char *path, char *out, size_t used, size_t size, int depth) {
    if (depth > 4) return used;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return used;
    char text[8192];
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    if (n <= 0) return used;
    text[n] = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *word = strtok_r(line, " \t\r", &line);
        if (!word) continue;
        if (strcmp(word, "include") == 0) {
            for (char *pattern; (pattern = strtok_r(NULL, " \t\r", &line));) {
                // Relative: to the including file's directory, as ldconfig reads it.
                char full[PATH_MAX];
                const char *slash = strrchr(path, '/');
                int dir = pattern[0] == '/' || !slash ? 0 : (int)(slash - path) + 1;
                snprintf(full, sizeof full, "%.*s%s", dir, path, pattern);
                glob_t g;
                if (glob(full, 0, NULL, &g) == 0) {
                    for (size_t k = 0; k < g.gl_pathc; k++) used = ld_so_conf(g.gl_pathv[k], out, used, size, depth + 1);
                    globfree(&g);
                }
            }
        } else if (word[0] == '/') {
            size_t len = strlen(word) + 1;
            if (used + len > size) return used;
            memcpy(out + used, word, len);
            used += len;
        }
    }
    return used;
}

// mountinfo escapes space, tab, newline and backslash as \ooo: undone in place.
static void mountinfo_unescape(char *s) {
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

// Is `prefix` (a path) `path` itself or one of its ancestors?
static size_t path_under(const char *path, const char *prefix) {
    size_t n = strlen(prefix);
    if (n == 1 && prefix[0] == '/') return 1;
    if (strncmp(path, prefix, n) != 0 || (path[n] != 0 && path[n] != '/')) return 0;
    return n;
}

struct mount_line { char *dev, *root, *point; };

// Can any of `paths` have another name through a mount? Only when another mount shows the
// same filesystem (superblock) as the mount the path is on. listmount and statmount
// (Linux 6.8) say that without the kernel formatting the whole mount table as text: a
// fresh process reads /proc/self/mountinfo in ~60 µs here, this takes ~25 µs for 21
// mounts. 1: perhaps (or cannot tell: an older kernel, a seccomp profile that refuses
// these calls, a mount we may not look at) — the caller then reads mountinfo; 0: no.
struct stigmer_mnt_id_req { uint32_t size, spare; uint64_t mnt_id, param; };
struct stigmer_statmount {  // the kernel's struct statmount, up to what is read here
    uint32_t size, mnt_opts;
    uint64_t mask;
    uint32_t sb_dev_major, sb_dev_minor;
    uint64_t rest[62];
};
struct stigmer_kstatx {  // the kernel's struct statx, up to stx_mnt_id
    uint32_t mask, blksize;
    uint64_t attributes;
    uint32_t nlink, uid, gid;
    uint16_t mode, spare0;
    uint64_t ino, size, blocks, attributes_mask;
    uint64_t times[8];
    uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
    uint64_t mnt_id;
    uint64_t rest[14];
};

static int mount_superblock(uint64_t id, uint64_t *dev) {
    struct stigmer_mnt_id_req req = { sizeof req, 0, id, 0x1 /* STATMOUNT_SB_BASIC */ };
    struct stigmer_statmount sm;
    if (syscall(457 /* statmount */, &req, &sm, sizeof sm, 0) != 0 || !(sm.mask & 0x1)) return -1;
    *dev = (uint64_t)sm.sb_dev_major << 32 | sm.sb_dev_minor;
    return 0;
}

static int mount_aliases_possible(const char *const *paths, int count) {
    if (count <= 0) return 0;
    if (count > 16) return 1;
    uint64_t own[16], dev[16];
    for (int p = 0; p < count; p++) {
        struct stigmer_kstatx stx;
        // STATX_MNT_ID_UNIQUE: the 64-bit ID listmount and statmount use.
        if (syscall(SYS_statx, AT_FDCWD, paths[p], 0, 0x4000U, &stx) != 0 || !(stx.mask & 0x4000U)) return 1;
        own[p] = stx.mnt_id;
        if (mount_superblock(own[p], &dev[p]) != 0) return 1;
    }
    // In batches, each from the last ID listed (listmount's `param`).
    uint64_t ids[256];
    struct stigmer_mnt_id_req req = { sizeof req, 0, (uint64_t)-1 /* LSMT_ROOT */, 0 };
    for (int batches = 0; batches < 64; batches++) {
        long n = syscall(458 /* listmount */, &req, ids, sizeof ids / sizeof ids[0], 0);
        if (n < 0 || (n == 0 && batches == 0)) return 1;
        for (long i = 0; i < n; i++) {
            // Another mount of the filesystem a path is on (its own mount is not another).
            int others = 0;
            for (int p = 0; p < count; p++) others |= ids[i] != own[p];
            if (!others) continue;
            uint64_t d;
            if (mount_superblock(ids[i], &d) != 0) return 1;
            for (int p = 0; p < count; p++) if (ids[i] != own[p] && d == dev[p]) return 1;
        }
        if (n < (long)(sizeof ids / sizeof ids[0])) return 0;
        req.param = ids[n - 1];
    }
    return 1;
}

size_t stigmer_mount_aliases(const char *const *paths, int count, char *out, size_t size) {
    if (!mount_aliases_possible(paths, count)) return 0;
    int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    size_t cap = 16384, len = 0;
    char *text = malloc(cap);
    for (ssize_t n; text; len += (size_t)n) {
        if (len + 1 >= cap) {
            char *bigger = realloc(text, cap * 2);
            if (!bigger) { free(text); text = NULL; break; }
            text = bigger;
            cap *= 2;
        }
        do { n = read(fd, text + len, cap - 1 - len); } while (n < 0 && errno == EINTR);
        if (n <= 0) break;
    }
    close(fd);
    if (!text) return 0;
    text[len] = 0;
    // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS …"
    int lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    struct mount_line *m = calloc((size_t)lines, sizeof *m);
    int nm = 0;
    for (char *line = text, *next; m && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        char *save, *field[5];
        int nf = 0;
        for (char *f = strtok_r(line, " ", &save); f && nf < 5; f = strtok_r(NULL, " ", &save)) field[nf++] = f;
        if (nf < 5) continue;
        mountinfo_unescape(field[3]);
        mountinfo_unescape(field[4]);
        m[nm++] = (struct mount_line){ field[2], field[3], field[4] };
    }
    size_t used = 0;
    for (int p = 0; m && p < count; p++) {
        // The mount the path is reached through: the longest mount point above it (the
        // last one listed, when one is mounted over another).
        int home = -1;
        size_t best = 0;
        for (int i = 0; i < nm; i++) {
            size_t n = path_under(paths[p], m[i].point);
            if (n && n >= best) { best = n; home = i; }
        }
        if (home < 0) continue;
        // Its place inside the filesystem: the mount's root, then the rest of the path.
        char inside[PATH_MAX];
        const char *rest = paths[p] + (best == 1 ? 0 : best);
        int w = snprintf(inside, sizeof inside, "%s%s", strcmp(m[home].root, "/") == 0 ? "" : m[home].root, rest);
        if (w <= 0 || (size_t)w >= sizeof inside) continue;
        struct stat original;
        int have_original = 0;  // stat'ed only when a candidate turns up (rarely)
        for (int i = 0; i < nm; i++) {
            if (i == home || strcmp(m[i].dev, m[home].dev) != 0) continue;
            char alias[PATH_MAX];
            size_t n = path_under(inside, m[i].root);
            if (n) {
                // The mount shows a directory above the path: the path again, below it.
                const char *tail = inside + (n == 1 ? 0 : n);
                w = snprintf(alias, sizeof alias, "%s%s", strcmp(m[i].point, "/") == 0 && tail[0] == '/' ? "" : m[i].point, tail);
                if (w <= 0 || (size_t)w >= sizeof alias || strcmp(alias, paths[p]) == 0) continue;
                // Only a name that leads to the same file (another mount may hide it).
                struct stat seen;
                if (!have_original) {
                    if (stat(paths[p], &original) != 0) break;
                    have_original = 1;
                }
                if (stat(alias, &seen) != 0 || seen.st_dev != original.st_dev || seen.st_ino != original.st_ino) continue;
            } else if (path_under(m[i].root, inside)) {
                // The mount shows something inside the path (the key file bound elsewhere):
                // its mount point is kept out whole.
                w = snprintf(alias, sizeof alias, "%s", m[i].point);
                if (w <= 0 || (size_t)w >= sizeof alias) continue;
            } else {
                continue;
            }
            // Full: fail closed, the caller refuses the launch.
            if (used + (size_t)w + 1 > size) { used = (size_t)-1; break; }
            memcpy(out + used, alias, (size_t)w + 1);
            used += (size_t)w + 1;
        }
        if (used == (size_t)-1) break;
    }
    free(m);
    free(text);
    return used;
}

size_t stigmer_ld_so_conf_dirs(char *out, size_t size) { return ld_so_conf("/etc/ld.so.conf", out, 0, size, 0); }

// "ID ID 1\n" into /proc/self/{uid,gid}_map: our own id, the only mapping an unprivileged
// process may write. Async-signal-safe: no stdio.
static int write_proc(const char *path, const char *text, size_t n) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t w = write(fd, text, n);
    int e = errno;
    close(fd);
    return w == (ssize_t)n ? 0 : -(w < 0 ? e : EIO);
}

static int write_id_map(const char *path, unsigned id) {
    char digits[16], text[48];
    int nd = 0;
    do { digits[nd++] = (char)('0' + id % 10); id /= 10; } while (id > 0);
    size_t n = 0;
    for (int twice = 0; twice < 2; twice++) {
        for (int i = nd - 1; i >= 0; i--) text[n++] = digits[i];
        text[n++] = ' ';
    }
    text[n++] = '1';
    text[n++] = '\n';
    return write_proc(path, text, n);
}

// A network namespace of the child's own, with only loopback, up, inside a user namespace
// of its own: for root every id it holds mapped to itself (a helper writes the maps), for
// anyone else its own uid and gid (so files keep their owners, and execve drops the
// namespace's capabilities). Root where no user namespace can be made: a plain one.
// 0 or -errno, *step naming what failed.
// Root: a user namespace with every id mapped to itself. Only a process with CAP_SETUID
// in the parent namespace may write such a map, and after unshare we are no longer in it:
// a forked helper, still outside, writes ours and exits (as unshare(1) does).
// Each range of this process's own id map ("inside outside count" lines), written as an
// identity map ("inside inside count"): what the new namespace may map is what ours holds
// (all of it for root on the host; less in a rootless container). 0 or -errno.
static int identity_map(const char *own, const char *target) {
    char in[4096], out[4096];
    int fd = open(own, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = read(fd, in, sizeof in - 1);
    close(fd);
    if (n <= 0) return -EIO;
    in[n] = 0;
    size_t w = 0;
    for (char *p = in; *p;) {
        unsigned long long f[3];
        int nf = 0;
        while (nf < 3) {
            while (*p == ' ' || *p == '\t') p++;
            if (*p < '0' || *p > '9') break;
            unsigned long long v = 0;
            while (*p >= '0' && *p <= '9') v = v * 10 + (unsigned long long)(*p++ - '0');
            f[nf++] = v;
        }
        while (*p && *p != '\n') p++;
        if (*p == '\n') p++;
        if (nf != 3) continue;
        unsigned long long fields[3] = { f[0], f[0], f[2] };
        for (int i = 0; i < 3; i++) {
            char digits[24];
            int nd = 0;
            unsigned long long v = fields[i];
            do { digits[nd++] = (char)('0' + v % 10); v /= 10; } while (v > 0);
            if (w + (size_t)nd + 2 > sizeof out) return -E2BIG;
            while (nd > 0) out[w++] = digits[--nd];
            out[w++] = i == 2 ? '\n' : ' ';
        }
    }
    if (w == 0) return -EINVAL;
    return write_proc(target, out, w);
}

static int root_user_namespace(const char **step) {
    int sync[2];
    *step = "pipe2";
    if (pipe2(sync, O_CLOEXEC) != 0) return -errno;
    pid_t self = getpid();
    // The raw system call, not glibc's fork(): no atfork handlers between fork and execve.
    // The helper inherits what this process is: non-dumpable, core limit 0.
    pid_t helper = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (helper < 0) {
        int e = errno;
        close(sync[0]);
        close(sync[1]);
        *step = "fork";
        return -e;
    }
    if (helper == 0) {
        close(sync[1]);
        char go;
        ssize_t n;
        do { n = read(sync[0], &go, 1); } while (n < 0 && errno == EINTR);
        if (n != 1) _exit(1);
        char digits[16], path[48];
        int nd = 0;
        for (unsigned v = (unsigned)self; nd == 0 || v > 0; v /= 10) digits[nd++] = (char)('0' + v % 10);
        for (const char *map = "u"; map; map = map[0] == 'u' ? "g" : NULL) {
            size_t at = 0;
            memcpy(path, "/proc/", 6), at = 6;
            for (int i = nd - 1; i >= 0; i--) path[at++] = digits[i];
            path[at++] = '/';
            path[at++] = map[0];
            memcpy(path + at, "id_map", 7);
            if (identity_map(map[0] == 'u' ? "/proc/self/uid_map" : "/proc/self/gid_map", path) != 0) _exit(2);
        }
        _exit(0);
    }
    close(sync[0]);
    *step = "unshare(CLONE_NEWUSER | CLONE_NEWNET)";
    int rc = unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0 ? 0 : -errno;
    if (rc == 0) {
        char go = 1;
        if (write(sync[1], &go, 1) != 1) rc = -EPIPE;
    }
    close(sync[1]);  // on failure: the helper reads EOF and leaves
    int status = 0;
    while (waitpid(helper, &status, 0) < 0 && errno == EINTR) {}
    if (rc == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        *step = "writing the user namespace's id maps";
        rc = -EPERM;
    }
    return rc;
}

static int private_network(const char **step) {
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (uid == 0) {
        // Root too gets a user namespace of its own, every id mapped to itself: the child
        // keeps root's files, but holds no capability over the host's namespaces (in a
        // plain network namespace a root child could setns back out).
        int rc = root_user_namespace(step);
        if (rc == -EPERM || rc == -EINVAL || rc == -ENOSPC || rc == -EUSERS) {
            // No user namespaces here (or no way to map them): a plain network namespace;
            // the default and strict filters refuse setns.
            if (rc == -EPERM && strcmp(*step, "writing the user namespace's id maps") == 0) return rc;
            *step = "unshare(CLONE_NEWNET)";
            if (unshare(CLONE_NEWNET) != 0) return -errno;
        } else if (rc != 0) {
            return rc;
        }
    } else {
        *step = "unshare(CLONE_NEWUSER | CLONE_NEWNET)";
        if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) return -errno;
        *step = "writing the user namespace's id maps";
        // A non-dumpable process's /proc/self files belong to root, so for these three
        // writes it is dumpable: a same-uid process could attach for that instant and
        // see what the child will hold after execve anyway (its argv and environment;
        // the opened values are wiped by now) — after execve it is dumpable for good.
        if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) return -errno;
        int rc = write_proc("/proc/self/setgroups", "deny", 4);
        if (rc == 0) rc = write_id_map("/proc/self/uid_map", uid);
        if (rc == 0) rc = write_id_map("/proc/self/gid_map", gid);
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 && rc == 0) rc = -errno;
        if (rc != 0) return rc;
    }
    *step = "bringing up the loopback interface";
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    int rc = 0;
    if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) rc = -errno;
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) rc = -errno;
    }
    close(s);
    return rc;
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
        // (2: the caller ignored nothing of its own — the exec path — so only the mask.)
        uint64_t mask = 0;
        int have_mask = l->reset_signals == 1 && ignored_mask(&mask) == 0;
        for (int sig = 1; sig < _NSIG && l->reset_signals == 1; sig++) {
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
    if (l->private_network) {
        int rc = private_network(step);
        if (rc != 0) return rc;
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
