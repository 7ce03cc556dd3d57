#if canImport(Glibc)
import Glibc
#endif
import CStigmerShims
import StigmerCore
import StigmerSystem

/// Values handed to the child as files that are on no filesystem (`${file:NAME}`,
/// `run --file-var NAME`): one sealed memfd per name — written once, then sealed against
/// writing, growing, shrinking and further seals — that the child opens as `/dev/fd/N`.
/// Close-on-exec until `handOver()`, just before the child starts; closed here once it has.
public final class SecretFiles {
    private(set) var descriptors: [(name: String, fd: Int32)] = []

    public init(_ names: [String], values: borrowing SecretBytes) throws(StigmerError) {
        for name in names {
            guard let entry = values.entry(name) else { continue }
            // The name shows in /proc/PID/fd as "/memfd:stigmer:NAME (deleted)": a name, never a value.
            let label = "stigmer:" + String(decoding: name.utf8.prefix(200), as: UTF8.self)
            let fd = values.withBytes(entry) { raw in stigmer_sealed_memfd(label, raw.baseAddress, raw.count) }
            guard fd >= 0 else {
                close()
                throw StigmerError(.ioError, "cannot hand \(name) over as a file (a sealed memfd); nothing was launched", cause: Errno(-fd).description)
            }
            descriptors.append((name, fd))
        }
    }

    /// `/dev/fd/N` for `name`, nil if it has no file.
    public func path(of name: String) -> String? {
        descriptors.first { $0.name == name }.map { "/dev/fd/\($0.fd)" }
    }

    /// Lets the descriptors pass execve (the child's, from now on).
    public func handOver() throws(StigmerError) {
        for (name, fd) in descriptors where fcntl(fd, F_SETFD, 0) != 0 {
            throw StigmerError(.ioError, "cannot hand \(name) over as a file; nothing was launched", cause: Errno.current.description)
        }
    }

    /// Closes this process's copies (a supervisor's, once the child runs).
    public func close() {
        for (_, fd) in descriptors { Sys.close(fd) }
        descriptors = []
    }
}
