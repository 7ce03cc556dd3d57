// The launcher's argument vector, taken from the C runtime instead of /proc/self/maps.
//
// The Swift runtime's CommandLine.cpp finds argv on Linux by opening /proc/self/maps from a
// static constructor, locating the stack and walking up from `environ`: on every start,
// before main, six system calls and the kernel formatting the whole memory map as text
// (~0.1 ms of a launch here; benchmarks/RESULTS.md). glibc hands every ELF constructor
// argc, argv and envp (csu/libc-start.c, call_init), so this file keeps them. Defining the
// two functions CommandLine.cpp.o exports means the static linker never pulls that member
// out of libswiftCore.a, and its constructor never runs. If a future runtime adds a symbol
// to that object and something references it, the link fails with a duplicate definition:
// loudly, at build time. Linked into the launcher only (Package.swift).
#include "stigmer_argv.h"

static int saved_argc;
static char **saved_argv;

// Priority 101: before any default-priority constructor that might read CommandLine.
__attribute__((constructor(101), used))
static void stigmer_keep_argv(int argc, char **argv, char **envp) {
    (void)envp;
    saved_argc = argc;
    saved_argv = argv;
}

char **_swift_stdlib_getUnsafeArgvArgc(int *outArgLen) {
    *outArgLen = saved_argc;
    return saved_argv;
}

void _swift_stdlib_overrideUnsafeArgvArgc(char **argv, int argc) {
    saved_argv = argv;
    saved_argc = argc;
}
