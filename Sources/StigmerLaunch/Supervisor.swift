#if canImport(Glibc)
import Glibc
#endif
import StigmerCore
import StigmerSystem

/// Keeps the launcher as the child's parent: forwards asynchronous signals, waits, and
/// reports the exit status the way a shell does (the child's code, or 128+N).
public enum Supervisor {
    /// Signals that are not forwarded: SIGCHLD is ours; the synchronous ones (SEGV, BUS,
    /// FPE, ILL, TRAP, SYS) concern the launcher itself; KILL and STOP cannot be caught.
    static let notForwarded: Set<Int32> = [SIGCHLD, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGKILL, SIGSTOP]

    /// Blocks every signal in the launcher, so none is lost between spawn and the wait
    /// loop; returns the previous mask. Call before `Launcher.spawn`.
    public static func blockSignals() -> sigset_t {
        var all = sigset_t()
        sigfillset(&all)
        var previous = sigset_t()
        sigprocmask(SIG_BLOCK, &all, &previous)
        return previous
    }

    /// Waits for `child`, forwarding every other asynchronous signal to it. Returns the
    /// shell-style status: the exit code, or 128+N when a signal ended it.
    public static func wait(for child: pid_t) -> Int32 {
        var set = sigset_t()
        sigfillset(&set)
        while true {
            var info = siginfo_t()
            let signal = sigwaitinfo(&set, &info)
            if signal == -1 { continue }  // EINTR
            if signal == SIGCHLD {
                var status: Int32 = 0
                let pid = waitpid(child, &status, WNOHANG)
                if pid == child { return shellStatus(status) }
                continue
            }
            if !notForwarded.contains(signal) { kill(child, signal) }
        }
    }

    /// WIFEXITED/WEXITSTATUS/WTERMSIG, which Swift does not import (they are macros).
    public static func shellStatus(_ status: Int32) -> Int32 {
        let signal = status & 0x7F
        if signal == 0 { return (status >> 8) & 0xFF }
        return 128 + signal
    }
}
