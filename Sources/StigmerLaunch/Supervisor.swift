#if canImport(Glibc)
import Glibc
#endif
import CStigmerShims
import StigmerCore
import StigmerSystem

/// Keeps the launcher as the child's parent (`--init`, `--delete-on-exit`,
/// `--mask-output`): forwards asynchronous signals, reaps, passes output through the
/// masker, and reports the exit status the way a shell does (the code, or 128+N). Fails
/// closed: what cannot be set up stops the launch before the child starts; what breaks
/// while it runs kills the child rather than leave it unsupervised.
public enum Supervisor {
    /// Not forwarded: SIGCHLD is ours; the synchronous ones (SEGV, BUS, FPE, ILL, TRAP,
    /// SYS) concern the launcher itself; KILL and STOP cannot be caught.
    static let notForwarded: Set<Int32> = [SIGCHLD, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGKILL, SIGSTOP]

    /// Every signal blocked and read from a signalfd, so none is lost between the spawn
    /// and the loop. Call before spawning; the child's shim empties its mask again.
    public static func signals() throws(StigmerError) -> Int32 {
        var previous = sigset_t()
        let rc = stigmer_block_all_signals(&previous)
        guard rc == 0 else {
            throw StigmerError(.internalError, "cannot block signals to supervise the child; nothing was launched", cause: Errno(-rc).description)
        }
        let fd = stigmer_signalfd_all()
        guard fd >= 0 else {
            throw StigmerError(.internalError, "cannot create a signalfd to supervise the child; nothing was launched", cause: Errno.current.description)
        }
        return fd
    }

    public struct Output {
        public let source: Int32
        public let target: Int32
        public init(source: Int32, target: Int32) {
            self.source = source
            self.target = target
        }
    }

    /// Waits for `child`, forwarding signals read from `signals` to it (or to its process
    /// group when `group`), reaping every other child too when `reapAll` (PID 1 /
    /// subreaper). Returns the child's status; throws (after killing the child) when
    /// supervision itself breaks.
    public static func supervise(child: pid_t, group: Bool, reapAll: Bool, signals: Int32,
                                 outputs: [Output], masker: Masker?) throws(StigmerError) -> ExitStatus {
        var streams = outputs.map { _ in Masker.Stream() }
        var open = outputs.map { _ in true }
        var status: ExitStatus?
        var buffer = [UInt8](repeating: 0, count: 65536)
        defer { Sys.close(signals) }

        func write(_ bytes: [UInt8], _ fd: Int32) {
            // A reader that went away (EPIPE: every signal is blocked here) loses the
            // output, as it would with any pipe; the child runs on.
            if !bytes.isEmpty { try? IO.writeAll(fd, bytes) }
        }

        func reap() {
            while true {
                var s: Int32 = 0
                let pid = waitpid(reapAll ? -1 : child, &s, WNOHANG)
                if pid <= 0 { return }
                if pid == child { status = ExitStatus(waitStatus: s) }
            }
        }

        /// Supervision broke: the child must not run on unwatched with its secrets.
        func abandon(_ what: String, _ error: Errno) -> StigmerError {
            kill(group ? -child : child, SIGKILL)
            var s: Int32 = 0
            while waitpid(child, &s, 0) < 0 && errno == EINTR {}
            return StigmerError(.internalError, "supervising the child failed (\(what)); it was killed", cause: error.description)
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
        var released = false
        while status == nil || (open.contains(true) && idleAfterExit < 2) {
            var fds = [pollfd(fd: signals, events: Int16(POLLIN), revents: 0)]
            for (i, output) in outputs.enumerated() where open[i] {
                fds.append(pollfd(fd: output.source, events: Int16(POLLIN), revents: 0))
            }
            // A partial line is written after 20 ms of quiet (prompts must show); once
            // the child has gone, output is drained until quiet.
            let hasPartial = streams.contains { !$0.pending.isEmpty }
            let timeout: Int32 = status != nil ? 50 : (hasPartial ? 20 : -1)
            if !released && timeout < 0 {
                // A resident supervisor (PID 1 for a container's life) keeps only what its
                // loop touches: the launch path's pages of the executable go back to the
                // page cache, just before the first wait (the loop's own code has run once).
                released = true
                _ = stigmer_release_image()
            }
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 {
                let e = Errno.current
                if e == .interrupted { continue }
                throw abandon("poll", e)
            }
            if ready == 0 {
                if let masker {
                    for i in streams.indices where open[i] { write(streams[i].flush(masker, final: false), outputs[i].target) }
                }
                if status != nil { idleAfterExit += 1 }
                continue
            }
            if fds[0].revents & Int16(POLLIN | POLLERR | POLLHUP | POLLNVAL) != 0 {
                while true {
                    let signal = stigmer_read_signal(signals)
                    if signal == 0 { break }
                    if signal < 0 { throw abandon("reading the signalfd", Errno(-signal)) }
                    if signal == SIGCHLD {
                        reap()
                    } else if !notForwarded.contains(signal) && status == nil {
                        if kill(group ? -child : child, signal) != 0 {
                            let e = Errno.current
                            // ESRCH: the child is exiting; its SIGCHLD is on the way.
                            if e.rawValue != ESRCH {
                                Stderr.line("stigmer-exec: warning: cannot forward signal \(signal) to the child (\(e))")
                            }
                        }
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
        return status ?? .exited(0)
    }
}
