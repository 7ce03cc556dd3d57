// The libdispatch symbols the Swift Concurrency runtime refers to, defined here so that the
// static launcher holds none of libdispatch.a -- above all not init.c, whose constructor,
// libdispatch_init, reads /sys/devices/system/cpu/possible twice and the CPU affinity on
// every start (six system calls and a dozen page faults a launch; benchmarks/RESULTS.md).
//
// The launcher runs no task: none of its own code is async, and its commands are
// synchronous. The Concurrency runtime still comes in -- ArgumentParser (AsyncParsableCommand),
// swift-log (TaskLocal) and swift-crypto's Swift objects, through FoundationEssentials' Data
// (`-Xlinker --why-extract=FILE` shows each chain) -- and refers to libdispatch for executors
// it never starts here. What it would call is defined here to stop the process: a launcher
// that ever schedules a task fails at once and loudly, never half-works. The same way argv.c
// keeps CommandLine.cpp.o out of libswiftCore.a: if a future runtime needs another
// libdispatch member, the Makefile's `nm` check (no libdispatch_init) or the link (a
// duplicate definition) says so at build time; integration/test_static_launcher.py runs
// every launcher command on the static build.
//
// Only in the fully static launcher (`make launcher` defines STIGMER_STATIC_LAUNCHER): a
// dynamically linked build loads libdispatch.so anyway, and these must not stand in for it.
#include "stigmer_static.h"

#ifdef STIGMER_STATIC_LAUNCHER
#include <stdlib.h>
#include <unistd.h>

__attribute__((noreturn, cold))
static void stigmer_nodispatch_called(void) {
    static const char message[] = "stigmer-exec: internal error: Swift Concurrency scheduled work; the launcher has no libdispatch\n";
    (void)!write(2, message, sizeof message - 1);
    abort();
}

#define STIGMER_NO_DISPATCH(name) void name(void) { stigmer_nodispatch_called(); }
STIGMER_NO_DISPATCH(dispatch_activate)
STIGMER_NO_DISPATCH(dispatch_after_f)
STIGMER_NO_DISPATCH(dispatch_assert_queue)
STIGMER_NO_DISPATCH(dispatch_async_f)
STIGMER_NO_DISPATCH(dispatch_main)
STIGMER_NO_DISPATCH(dispatch_queue_attr_make_with_qos_class)
STIGMER_NO_DISPATCH(dispatch_queue_create)
STIGMER_NO_DISPATCH(dispatch_queue_set_width)
STIGMER_NO_DISPATCH(dispatch_release)
STIGMER_NO_DISPATCH(dispatch_set_context)
STIGMER_NO_DISPATCH(dispatch_source_create)
STIGMER_NO_DISPATCH(dispatch_source_set_event_handler_f)
STIGMER_NO_DISPATCH(dispatch_source_set_timer)
STIGMER_NO_DISPATCH(dispatch_walltime)

// Objects whose addresses the runtime takes (the main queue, two constants); never read.
__attribute__((aligned(64))) char _dispatch_main_q[1024];
__attribute__((aligned(64))) char _dispatch_queue_attr_concurrent[256];
__attribute__((aligned(64))) const char _dispatch_source_type_timer[256];
#endif
