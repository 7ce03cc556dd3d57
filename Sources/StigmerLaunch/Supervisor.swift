#if canImport(Glibc)
import Glibc
#endif
import CStigmerShims
import StigmerCore
import StigmerSystem

/// Keeps the launcher as the child's parent (`--init`, `--delete-on-exit`,
/// `--mask-output`): forwards asynchronous signals, reaps, passes output through the
/// masker, and reports the exit status the way a shell does (the code, or 128+N).
public enum Supervisor {
    /// Not forwarded: SIGCHLD is ours; the synchronous ones (SEGV, BUS, FPE, ILL, TRAP,
    /// SYS) concern the launcher itself; KILL and STOP cannot be caught.
    static let notForwarded: Set<Int32> = [SIGCHLD, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGKILL, SIGSTOP]

    /// Blocks every signal in the launcher (read later through a signalfd), so none is
    /// lost between spawn and the loop. Call before spawning.
    public static func blockSignals() {
        var all = sigset_t()
        sigfillset(&all)
        sigprocmask(SIG_BLOCK, &all, nil)
    }

    public struct Output {
        public let source: Int32
        public let target: Int32
        public init(source: Int32, target: Int32) {
            self.source = source
            self.target = target
        }
    }

    /// Waits for `child`, forwarding signals to it (or to its process group when
    /// `group`), reaping every other child too when `reapAll` (PID 1 / subreaper).
    public static func supervise(child: pid_t, group: Bool, reapAll: Bool, outputs: [Output], masker: Masker?) -> Int32 {
        let signals = stigmer_signalfd_all()
        var streams = outputs.map { _ in Masker.Stream() }
        var open = outputs.map { _ in true }
        var status: Int32?
        var buffer = [UInt8](repeating: 0, count: 65536)

        func write(_ bytes: [UInt8], _ fd: Int32) {
            if !bytes.isEmpty { try? IO.writeAll(fd, bytes) }
        }

        func reap() {
            while true {
                var s: Int32 = 0
                let pid = waitpid(reapAll ? -1 : child, &s, WNOHANG)
                if pid <= 0 { return }
                if pid == child { status = s }
            }
        }

        func drain(_ i: Int) {
            let n = buffer.withUnsafeMutableBytes { read(outputs[i].source, $0.baseAddress, $0.count) }
            if n > 0 {
                if let masker {
                    write(streams[i].feed(buffer[..<n], masker), outputs[i].target)
                } else {
                    write(Array(buffer[..<n]), outputs[i].target)
                }
            } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                if let masker { write(streams[i].flush(masker, final: true), outputs[i].target) }
                close(outputs[i].source)
                open[i] = false
            }
        }

        var idleAfterExit = 0
        while status == nil || (open.contains(true) && idleAfterExit < 2) {
            var fds = [pollfd(fd: signals, events: Int16(POLLIN), revents: 0)]
            for (i, output) in outputs.enumerated() where open[i] {
                fds.append(pollfd(fd: output.source, events: Int16(POLLIN), revents: 0))
            }
            // A partial line is written after 20 ms of quiet (prompts must show); once
            // the child has gone, output is drained until quiet.
            let hasPartial = streams.contains { !$0.pending.isEmpty }
            let timeout: Int32 = status != nil ? 50 : (hasPartial ? 20 : -1)
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready == 0 {
                if let masker {
                    for i in streams.indices where open[i] { write(streams[i].flush(masker, final: false), outputs[i].target) }
                }
                if status != nil { idleAfterExit += 1 }
                continue
            }
            if ready < 0 { continue }  // EINTR
            if fds[0].revents & Int16(POLLIN) != 0 {
                while true {
                    let signal = stigmer_read_signal(signals)
                    if signal <= 0 { break }
                    if signal == SIGCHLD {
                        reap()
                    } else if !notForwarded.contains(signal) && status == nil {
                        kill(group ? -child : child, signal)
                    }
                }
            }
            var k = 1
            for i in outputs.indices where open[i] {
                if fds[k].revents != 0 { drain(i) }
                k += 1
            }
        }
        for i in outputs.indices where open[i] {
            if let masker { write(streams[i].flush(masker, final: true), outputs[i].target) }
            close(outputs[i].source)
        }
        close(signals)
        return shellStatus(status ?? 0)
    }

    /// WIFEXITED/WEXITSTATUS/WTERMSIG, which Swift does not import (they are macros).
    public static func shellStatus(_ status: Int32) -> Int32 {
        let signal = status & 0x7F
        if signal == 0 { return (status >> 8) & 0xFF }
        return 128 + signal
    }
}
