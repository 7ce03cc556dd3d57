/*
 * probe: performs raw system calls for test_hardening.py and reports each
 * outcome as one JSON line:
 *
 *   {"name":"bpf","ret":-1,"errno":1,"err":"EPERM"}
 *
 * Usage: probe NAME [NAME ...]   (one raw syscall(2) per NAME, in order)
 *        probe list              (every known NAME, one per line)
 *
 * Arguments are chosen so that an *unfiltered* call, even as root, fails
 * harmlessly (bad pointer -> EFAULT, fd -1 -> EBADF, invalid flags ->
 * EINVAL, pid 0x7fffffff -> ESRCH, ...) or succeeds without side effects
 * outside this short-lived process. A seccomp filter that denies the call
 * shows up as EPERM (or ENOSYS) instead.
 *
 * "x32_getpid" and "i386_getpid" issue a syscall from a foreign ABI; a
 * filter that kills on a foreign ABI ends the process with SIGSYS before
 * anything is printed for them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define BAD ((long)1) /* an unmapped user address: EFAULT when dereferenced */
#define NOPID 0x7fffffffL

#ifndef SYS_lookup_dcookie
#define SYS_lookup_dcookie 212
#endif
#ifndef SYS_uselib
#define SYS_uselib 134
#endif
#ifndef SYS_ustat
#define SYS_ustat 136
#endif
#ifndef SYS_sysfs
#define SYS_sysfs 139
#endif
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_memfd_create
#define SYS_memfd_create 319
#endif
#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#endif

#define X32_BIT 0x40000000L

static long ret_value;
static int ret_errno;

/* Record the outcome of a raw syscall. */
static void rec(long r) {
    ret_value = r;
    ret_errno = (r == -1) ? errno : 0;
}

static const char *errname(int e) {
    switch (e) {
    case 0: return "OK";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case E2BIG: return "E2BIG";
    case ENOEXEC: return "ENOEXEC";
    case EBADF: return "EBADF";
    case ECHILD: return "ECHILD";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case ENOTTY: return "ENOTTY";
    case ENOSPC: return "ENOSPC";
    case ESPIPE: return "ESPIPE";
    case EROFS: return "EROFS";
    case ERANGE: return "ERANGE";
    case ENOSYS: return "ENOSYS";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOTSUP: return "EOPNOTSUPP";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT";
    case EKEYREJECTED: return "EKEYREJECTED";
    case ENOKEY: return "ENOKEY";
    default: return "OTHER";
    }
}

/* A fork-like raw clone() whose child exits at once; reaps it. */
static void raw_clone_and_reap(unsigned long flags) {
    long r = syscall(SYS_clone, flags, 0L, 0L, 0L, 0L);
    if (r == 0)
        _exit(0);
    rec(r);
    if (r > 0) {
        int status = 0;
        if (waitpid((pid_t)r, &status, 0) != r || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            ret_value = -1;
            ret_errno = ECHILD;
        } else {
            ret_value = 0; /* report success without the (varying) pid */
        }
    }
}

/* clone() with a CLONE_NEW* flag plus CLONE_THREAD without CLONE_SIGHAND:
 * the kernel rejects that combination with EINVAL before creating anything,
 * so only a filter can turn it into EPERM. */
static void clone_new(unsigned long newflag) {
    long r = syscall(SYS_clone, newflag | CLONE_THREAD | SIGCHLD, 0L, 0L, 0L, 0L);
    if (r == 0)
        _exit(0); /* never expected */
    rec(r);
}

/* vhangup() as root hangs up the controlling terminal: run it in a child
 * that first detaches from any terminal with setsid(). */
static void vhangup_detached(void) {
    int fds[2];
    if (pipe(fds) != 0) {
        rec(-1);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        int result[2];
        if (setsid() < 0) {
            result[0] = -2;
            result[1] = errno;
        } else {
            long r = syscall(SYS_vhangup);
            result[0] = (int)r;
            result[1] = (r == -1) ? errno : 0;
        }
        if (write(fds[1], result, sizeof result) != sizeof result)
            _exit(1);
        _exit(0);
    }
    close(fds[1]);
    int result[2] = {-1, EIO};
    if (pid < 0 || read(fds[0], result, sizeof result) != sizeof result) {
        result[0] = -1;
        result[1] = EIO;
    }
    close(fds[0]);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    ret_value = result[0] == -2 ? -1 : result[0];
    ret_errno = result[1];
}

static void i386_getpid(void) {
    long r;
    /* eax = 20 (i386 getpid); the 32-bit entry point ignores upper bits. */
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory", "cc");
    ret_value = r < 0 ? -1 : r;
    ret_errno = r < 0 ? (int)-r : 0;
}

static void mmap_wx(void) {
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        rec(-1);
        return;
    }
    munmap(p, 4096);
    rec(0);
}

static void mprotect_x(void) {
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        ret_value = -2; /* setup failed: distinguishable from the probe */
        ret_errno = errno;
        return;
    }
    rec(mprotect(p, 4096, PROT_READ | PROT_EXEC));
    munmap(p, 4096);
}

static void memfd(void) {
    long r = syscall(SYS_memfd_create, "probe", 0L);
    rec(r);
    if (r >= 0) {
        close((int)r);
        ret_value = 0;
    }
}

static void socket_family(int family, int type) {
    long r = syscall(SYS_socket, (long)family, (long)type, 0L);
    rec(r);
    if (r >= 0) {
        close((int)r);
        ret_value = 0;
    }
}

static void plain_fork(void) {
    pid_t pid = fork();
    if (pid == 0)
        _exit(7);
    if (pid < 0) {
        rec(-1);
        return;
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 7) {
        ret_value = -1;
        ret_errno = ECHILD;
        return;
    }
    ret_value = 0;
    ret_errno = 0;
}

static void getpid_check(void) {
    long r = syscall(SYS_getpid);
    rec(r);
    if (r == (long)getpid())
        ret_value = 0; /* "works": the real pid */
}

static void personality_set(unsigned long persona) {
    long r = syscall(SYS_personality, persona);
    rec(r);
    if (r >= 0) {
        syscall(SYS_personality, 0UL); /* restore PER_LINUX */
        ret_value = 0;
    }
}

/* Reads NoNewPrivs and Seccomp from /proc/self/status: ret = NoNewPrivs*10 + Seccomp. */
static void status_check(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) {
        rec(-1);
        return;
    }
    char line[256];
    long nnp = -1, mode = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "NoNewPrivs:", 11) == 0)
            nnp = strtol(line + 11, NULL, 10);
        else if (strncmp(line, "Seccomp:", 8) == 0)
            mode = strtol(line + 8, NULL, 10);
    }
    fclose(f);
    ret_value = nnp * 10 + mode;
    ret_errno = 0;
}

struct probe {
    const char *name;
    void (*fn)(void);
};

#define P(nm, expr) static void p_##nm(void) { rec(expr); }
/* ---- denied by the default filter (EPERM) ---- */
P(ptrace, syscall(SYS_ptrace, 16L /* PTRACE_ATTACH */, NOPID, 0L, 0L))
P(process_vm_readv, syscall(SYS_process_vm_readv, NOPID, 0L, 0L, 0L, 0L, 1L /* flags must be 0 */))
P(process_vm_writev, syscall(SYS_process_vm_writev, NOPID, 0L, 0L, 0L, 0L, 1L))
P(process_madvise, syscall(SYS_process_madvise, -1L, 0L, 0L, 0L, 0L))
P(pidfd_getfd, syscall(SYS_pidfd_getfd, -1L, 0L, 0L))
P(kcmp, syscall(SYS_kcmp, NOPID, NOPID, 0L, 0L, 0L))
P(perf_event_open, syscall(SYS_perf_event_open, 0L /* NULL attr */, 0L, -1L, -1L, 0L))
P(lookup_dcookie, syscall(SYS_lookup_dcookie, 0L, BAD, 0L))
P(bpf, syscall(SYS_bpf, 0xffffL /* no such command */, 0L, 0L))
P(userfaultfd, syscall(SYS_userfaultfd, 0xffffffffL))
P(keyctl, syscall(SYS_keyctl, 0x7fffL /* no such operation */, 0L, 0L, 0L, 0L))
P(add_key, syscall(SYS_add_key, BAD, BAD, 0L, 0L, -1L))
P(request_key, syscall(SYS_request_key, BAD, BAD, 0L, -1L))
P(mount, syscall(SYS_mount, 0L, BAD, 0L, 0L, 0L))
P(umount2, syscall(SYS_umount2, BAD, 0L))
P(pivot_root, syscall(SYS_pivot_root, BAD, BAD))
P(chroot, syscall(SYS_chroot, BAD))
P(open_tree, syscall(SYS_open_tree, -1L, BAD, 0xffffffffL))
P(move_mount, syscall(SYS_move_mount, -1L, BAD, -1L, BAD, 0xffffffffL))
P(fsopen, syscall(SYS_fsopen, BAD, 0xffffffffL))
P(fsconfig, syscall(SYS_fsconfig, -1L, 0xffffL, 0L, 0L, 0L))
P(fsmount, syscall(SYS_fsmount, -1L, 0xffffffffL, 0L))
P(fspick, syscall(SYS_fspick, -1L, BAD, 0xffffffffL))
P(mount_setattr, syscall(SYS_mount_setattr, -1L, BAD, 0xffffffffL, 0L, 0L))
/* invalid flag mix with CLONE_NEWUSER: EINVAL, never a new namespace */
P(unshare, syscall(SYS_unshare, (long)(CLONE_NEWUSER | CLONE_SETTLS)))
P(setns, syscall(SYS_setns, -1L, 0L))
P(init_module, syscall(SYS_init_module, 0L, 0L, BAD))
P(finit_module, syscall(SYS_finit_module, -1L, BAD, 0xffffffffL))
P(delete_module, syscall(SYS_delete_module, BAD, 0L))
P(kexec_load, syscall(SYS_kexec_load, 0L, 0L, 0L, 0xffffffffL))
P(kexec_file_load, syscall(SYS_kexec_file_load, -1L, -1L, 0L, 0L, 0xffffffffL))
P(reboot, syscall(SYS_reboot, 0L, 0L, 0L, 0L) /* wrong magic: EINVAL */)
P(swapon, syscall(SYS_swapon, BAD, 0xffffffffL))
P(swapoff, syscall(SYS_swapoff, BAD))
P(iopl, syscall(SYS_iopl, 4L /* > 3 */))
P(ioperm, syscall(SYS_ioperm, 0xffffffffL, 1L, 0L))
P(acct, syscall(SYS_acct, BAD))
P(quotactl, syscall(SYS_quotactl, 0L, BAD, 0L, 0L))
P(clock_settime, syscall(SYS_clock_settime, 100L /* no such clock */, BAD))
P(clock_adjtime, syscall(SYS_clock_adjtime, 100L, BAD))
P(settimeofday, syscall(SYS_settimeofday, BAD, 0L))
P(adjtimex, syscall(SYS_adjtimex, BAD))
P(sethostname, syscall(SYS_sethostname, BAD, 100000L))
P(setdomainname, syscall(SYS_setdomainname, BAD, 100000L))
P(syslog, syscall(SYS_syslog, 0x7fffL /* no such action */, 0L, 0L))
P(open_by_handle_at, syscall(SYS_open_by_handle_at, -1L, BAD, 0L))
P(fanotify_init, syscall(SYS_fanotify_init, 0xffffffffL, 0L))
/* modify_ldt returns an int zero-extended to 64 bits: -EINVAL is 0xffffffea */
static void p_modify_ldt(void) {
    long r = syscall(SYS_modify_ldt, 1L /* write */, 0L, 0L /* wrong size */);
    if (r > 0 && (int)r < 0) {
        errno = -(int)r;
        r = -1;
    }
    rec(r);
}
P(uselib, syscall(SYS_uselib, BAD))
P(ustat, syscall(SYS_ustat, 0L, BAD))
P(sysfs, syscall(SYS_sysfs, 0x7fffL, 0L, 0L))
/* ---- ENOSYS under the default filter ---- */
P(io_uring_setup, syscall(SYS_io_uring_setup, 0L, BAD))
P(io_uring_enter, syscall(SYS_io_uring_enter, -1L, 0L, 0L, 0L, 0L, 0L))
P(io_uring_register, syscall(SYS_io_uring_register, -1L, 0L, 0L, 0L))
P(clone3, syscall(SYS_clone3, 0L, 0L /* size 0: EINVAL */))
/* ---- argument-filtered ---- */
static void p_clone_newns(void) { clone_new(CLONE_NEWNS); }
static void p_clone_newcgroup(void) { clone_new(CLONE_NEWCGROUP); }
static void p_clone_newuts(void) { clone_new(CLONE_NEWUTS); }
static void p_clone_newipc(void) { clone_new(CLONE_NEWIPC); }
static void p_clone_newuser(void) { clone_new(CLONE_NEWUSER); }
static void p_clone_newpid(void) { clone_new(CLONE_NEWPID); }
static void p_clone_newnet(void) { clone_new(CLONE_NEWNET); }
P(ioctl_tiocsti, syscall(SYS_ioctl, 0L, 0x5412L, BAD))
P(ioctl_tiocsti_high, syscall(SYS_ioctl, 0L, (long)0xffffffff00005412UL, BAD))
P(ioctl_tioclinux, syscall(SYS_ioctl, 0L, 0x541CL, BAD))
static void p_socket_alg(void) { socket_family(38, SOCK_SEQPACKET); }
static void p_socket_vsock(void) { socket_family(40, SOCK_STREAM); }
static void p_personality_rie(void) { personality_set(0x0400000UL); }
static void p_vhangup(void) { vhangup_detached(); }
/* ---- allowed controls ---- */
P(read_badfd, syscall(SYS_read, -1L, 0L, 0L))
P(write_efault, syscall(SYS_write, 1L, BAD, 1L))
static void p_getpid(void) { getpid_check(); }
P(personality_query, syscall(SYS_personality, 0xffffffffL))
static void p_personality_0(void) { personality_set(0UL); }
static void p_fork(void) { plain_fork(); }
static void p_clone_plain(void) { raw_clone_and_reap(SIGCHLD); }
static void p_memfd_create(void) { memfd(); }
P(prctl_get_nnp, syscall(SYS_prctl, (long)PR_GET_NO_NEW_PRIVS, 0L, 0L, 0L, 0L))
P(prctl_clear_nnp, syscall(SYS_prctl, (long)PR_SET_NO_NEW_PRIVS, 0L, 0L, 0L, 0L))
P(prctl_get_mdwe, syscall(SYS_prctl, (long)PR_GET_MDWE, 0L, 0L, 0L, 0L))
P(seccomp_action_avail, syscall(SYS_seccomp, 2L /* SECCOMP_GET_ACTION_AVAIL */, 0L, BAD))
static void p_mlock(void) {
    static char page[4096] __attribute__((aligned(4096)));
    rec(syscall(SYS_mlock, (long)page, 4096L));
    if (ret_value == 0)
        munlock(page, sizeof page);
}
P(socket_unix, syscall(SYS_socket, (long)AF_UNIX, 0x7fL /* bad type */, 0L))
static void p_status(void) { status_check(); }
/* Installs an allow-everything filter on top: it must not loosen the
 * launcher's filter (seccomp filters only ever add restrictions). */
static void p_add_allow_all_filter(void) {
    struct sock_filter insns[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {.len = 1, .filter = insns};
    rec(syscall(SYS_prctl, (long)PR_SET_SECCOMP, (long)SECCOMP_MODE_FILTER, (long)&prog, 0L, 0L));
}
/* ---- strict (W^X) ---- */
static void p_mmap_wx(void) { mmap_wx(); }
static void p_mprotect_x(void) { mprotect_x(); }
/* ---- foreign ABI ---- */
P(x32_getpid, syscall(SYS_getpid | X32_BIT))
static void p_i386_getpid(void) { i386_getpid(); }

#define E(nm) {#nm, p_##nm}
static const struct probe probes[] = {
    E(ptrace), E(process_vm_readv), E(process_vm_writev), E(process_madvise), E(pidfd_getfd),
    E(kcmp), E(perf_event_open), E(lookup_dcookie), E(bpf), E(userfaultfd), E(keyctl),
    E(add_key), E(request_key), E(mount), E(umount2), E(pivot_root), E(chroot), E(open_tree),
    E(move_mount), E(fsopen), E(fsconfig), E(fsmount), E(fspick), E(mount_setattr), E(unshare),
    E(setns), E(init_module), E(finit_module), E(delete_module), E(kexec_load),
    E(kexec_file_load), E(reboot), E(swapon), E(swapoff), E(iopl), E(ioperm), E(acct),
    E(quotactl), E(clock_settime), E(clock_adjtime), E(settimeofday), E(adjtimex),
    E(sethostname), E(setdomainname), E(syslog), E(vhangup), E(open_by_handle_at),
    E(fanotify_init), E(modify_ldt), E(uselib), E(ustat), E(sysfs),
    E(io_uring_setup), E(io_uring_enter), E(io_uring_register), E(clone3),
    E(clone_newns), E(clone_newcgroup), E(clone_newuts), E(clone_newipc), E(clone_newuser),
    E(clone_newpid), E(clone_newnet), E(ioctl_tiocsti), E(ioctl_tiocsti_high),
    E(ioctl_tioclinux), E(socket_alg), E(socket_vsock), E(personality_rie),
    E(read_badfd), E(write_efault), E(getpid), E(personality_query), E(personality_0), E(fork),
    E(clone_plain), E(memfd_create), E(prctl_get_nnp), E(prctl_clear_nnp), E(prctl_get_mdwe),
    E(seccomp_action_avail), E(mlock), E(socket_unix), E(status), E(add_allow_all_filter),
    E(mmap_wx), E(mprotect_x), E(x32_getpid), E(i386_getpid),
};
#define NPROBES (sizeof probes / sizeof probes[0])

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0); /* each result is out before the next call */
    if (argc == 2 && strcmp(argv[1], "list") == 0) {
        for (size_t i = 0; i < NPROBES; i++)
            printf("%s\n", probes[i].name);
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: probe NAME [NAME ...] | probe list\n");
        return 2;
    }
    for (int a = 1; a < argc; a++) {
        if (strncmp(argv[a], "open=", 5) == 0 || strncmp(argv[a], "read=", 5) == 0) {
            const char *path = argv[a] + 5;
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            long r = fd < 0 ? -1 : 0;
            int e = fd < 0 ? errno : 0;
            if (fd >= 0 && argv[a][0] == 'r') {
                char buf[4096];
                ssize_t n = read(fd, buf, sizeof buf);
                r = n < 0 ? -1 : (long)n;
                e = n < 0 ? errno : 0;
            }
            if (fd >= 0)
                close(fd);
            printf("{\"name\":\"%s\",\"ret\":%ld,\"errno\":%d,\"err\":\"%s\"}\n", argv[a], r, e, errname(e));
            continue;
        }
        const struct probe *p = NULL;
        for (size_t i = 0; i < NPROBES; i++)
            if (strcmp(probes[i].name, argv[a]) == 0)
                p = &probes[i];
        if (!p) {
            fprintf(stderr, "probe: unknown name %s\n", argv[a]);
            return 2;
        }
        errno = 0;
        ret_value = 0;
        ret_errno = 0;
        p->fn();
        printf("{\"name\":\"%s\",\"ret\":%ld,\"errno\":%d,\"err\":\"%s\"}\n", p->name, ret_value,
               ret_errno, errname(ret_errno));
    }
    return 0;
}
