#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import StigmerCore

public typealias FileStatus = Glibc.stat

/// An errno value, read on the line right after the failing call (swift-system's rule).
public struct Errno: Error, Sendable, Equatable, CustomStringConvertible {
    public var rawValue: Int32
    public init(_ rawValue: Int32) { self.rawValue = rawValue }
    public static var current: Errno { Errno(errno) }

    public var description: String {
        guard let text = strerror(rawValue) else { return "errno \(rawValue)" }
        return String(cString: text)
    }

    public static let notFound = Errno(ENOENT)
    public static let exists = Errno(EEXIST)
    public static let interrupted = Errno(EINTR)

    /// The file system, or the user's quota on it, is full.
    public var isOutOfSpace: Bool { rawValue == ENOSPC || rawValue == EDQUOT }
}

extension StigmerError {
    /// A failed write or create (74). A full disk is said in words, with what to do: the
    /// errno text alone ("No space left on device") does not say which disk or that
    /// freeing space is the fix.
    public static func cannotWrite(_ what: String, _ error: Errno) -> StigmerError {
        guard error.isOutOfSpace else { return StigmerError(.ioError, what, cause: error.description) }
        return StigmerError(.ioError, "\(what): the disk is full; free some space there and retry", cause: error.description)
    }
}

/// Thin wrappers, one per syscall, named after it. `-1` becomes a thrown `Errno`; EINTR is
/// retried here, in one place.
public enum Sys {
    @inline(__always)
    static func retrying<T: BinaryInteger>(_ call: () -> T) throws(Errno) -> T {
        while true {
            let r = call()
            if r != -1 { return r }
            let e = Errno.current
            if e != .interrupted { throw e }
        }
    }

    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) throws(Errno) -> Int32 {
        try retrying { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    public static func close(_ fd: Int32) {
        // Not retried: on Linux the descriptor is gone even when close reports EINTR.
        _ = Glibc.close(fd)
    }

    /// Closes a descriptor a secret was read from (`--key-fd`, `--token-fd`). 0, 1 and 2
    /// get /dev/null instead, so `--key-fd 0` does not leave the child without a stdin
    /// (or let the next file opened become one).
    public static func closeConsumed(_ fd: Int32) {
        guard fd <= 2 else { close(fd); return }
        let null = Glibc.open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY)
        if null >= 0 && null != fd {
            _ = dup2(null, fd)
            _ = Glibc.close(null)
        } else if null < 0 {
            close(fd)
        }
    }

    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) -> Int {
        try retrying { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    public static func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(Errno) -> Int {
        try retrying { Glibc.write(fd, buffer.baseAddress, buffer.count) }
    }

    public static func fstat(_ fd: Int32) throws(Errno) -> FileStatus {
        var st = FileStatus()
        _ = try retrying { Glibc.fstat(fd, &st) }
        return st
    }

    public static func stat(_ path: String) throws(Errno) -> FileStatus {
        var st = FileStatus()
        _ = try retrying { fstatat(AT_FDCWD, path, &st, 0) }
        return st
    }

    public static func lstat(_ path: String) throws(Errno) -> FileStatus {
        var st = FileStatus()
        _ = try retrying { Glibc.lstat(path, &st) }
        return st
    }

    public static func mkdir(_ path: String, _ mode: mode_t) throws(Errno) {
        _ = try retrying { Glibc.mkdir(path, mode) }
    }

    public static func fsync(_ fd: Int32) throws(Errno) {
        _ = try retrying { Glibc.fsync(fd) }
    }

    /// fsync of the directory holding `path`, so a name just created or renamed there
    /// survives a power loss.
    public static func syncDirectory(of path: String) throws(Errno) {
        let directory = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let fd = try open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { close(fd) }
        try fsync(fd)
    }

    public static func unlink(_ path: String) throws(Errno) {
        _ = try retrying { Glibc.unlink(path) }
    }

    public static func link(_ existing: String, _ new: String) throws(Errno) {
        _ = try retrying { Glibc.link(existing, new) }
    }

    public static func flock(_ fd: Int32, _ operation: Int32) throws(Errno) {
        // Named by its type: `flock` alone is also the struct of fcntl's locks.
        let call: (Int32, Int32) -> Int32 = Glibc.flock(_:_:)
        _ = try retrying { call(fd, operation) }
    }

    public static func ftruncate(_ fd: Int32, _ length: off_t) throws(Errno) {
        _ = try retrying { Glibc.ftruncate(fd, length) }
    }

    public static func isatty(_ fd: Int32) -> Bool { Glibc.isatty(fd) == 1 }

    public static var euid: uid_t { geteuid() }

    /// Seconds since the Unix epoch.
    /// CLOCK_MONOTONIC in nanoseconds, for durations.
    public static func monotonicNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    public static func now() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }

    public static func getenv(_ name: String) -> String? {
        guard let value = Glibc.getenv(name) else { return nil }
        return String(cString: value)
    }
}

/// Reading and writing whole descriptors and files.
public enum IO {
    /// Reads `fd` to EOF, refusing more than `limit` bytes.
    /// `expected`: the size a regular file reports, so the bytes land in one buffer (no
    /// regrowth: fewer page faults, and no freed, unwiped partial copies of a secret file).
    public static func readAll(_ fd: Int32, limit: Int = 64 << 20, expected: Int = 0) throws(Errno) -> [UInt8] {
        var out: [UInt8] = []
        if expected > 0 {
            // Straight into the result, one byte more than the file reports to see its end:
            // no chunk (a zeroed 16 KB, four page faults, for a 45-byte key file).
            let capacity = min(expected, limit) + 1
            var failure: Errno?
            out = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
                (count, failure) = fill(fd, buffer)
            }
            if let failure {
                out.wipe()
                throw failure
            }
            if out.count < capacity { return out }
            // Longer than it said (it grew): on in chunks.
            if out.count > limit {
                out.wipe()
                throw Errno(EFBIG)
            }
        }
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = try chunk.withUnsafeMutableBytes { buf in Result { () throws(Errno) in try Sys.read(fd, into: buf) } }.get()
            if n == 0 { break }
            out.append(contentsOf: chunk[..<n])
            if out.count > limit { throw Errno(EFBIG) }
        }
        // The chunk may have held secret bytes: clear it before it is freed.
        chunk.wipe()
        return out
    }

    public static func writeAll(_ fd: Int32, _ bytes: some Collection<UInt8>) throws(Errno) {
        let array = Array(bytes)
        var offset = 0
        while offset < array.count {
            let n = try array.withUnsafeBytes { buf in
                Result { () throws(Errno) in try Sys.write(fd, UnsafeRawBufferPointer(rebasing: buf[offset...])) }
            }.get()
            offset += n
        }
    }

    /// Writes a buffer without copying it (plaintext in a `SecretBytes`, say).
    public static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(Errno) {
        var offset = 0
        while offset < buffer.count {
            offset += try Sys.write(fd, UnsafeRawBufferPointer(rebasing: buffer[offset...]))
        }
    }

    public static func writeAll(_ fd: Int32, _ text: String) throws(Errno) {
        try writeAll(fd, Array(text.utf8))
    }

    /// Reads a regular file (no FIFOs or devices that could block), as a located error.
    public static func readFile(_ path: String, limit: Int = 64 << 20) throws(StigmerError) -> [UInt8] {
        try withFile(path) { fd, size throws(Errno) in try readAll(fd, limit: limit, expected: size) }
    }

    /// A text file, as `readFile` opens it; nil when it is not UTF-8. An ASCII file (most
    /// configs and manifests) is read straight into the String's storage: a 1 MB config was
    /// read into a byte array and copied into a String, two buffers and ~512 page faults.
    public static func readText(_ path: String, limit: Int = 64 << 20) throws(StigmerError) -> String? {
        try withFile(path) { fd, size throws(Errno) -> String? in
            if size > 0 && size < limit {
                var failure: Errno?
                var ascii = true
                // One byte more than the file reports, to see its end.
                let text = String(unsafeUninitializedCapacity: size + 1) { buffer in
                    let count: Int
                    (count, failure) = fill(fd, buffer)
                    ascii = failure == nil && count <= size && isASCII(UnsafeBufferPointer(rebasing: buffer[..<count]))
                    return ascii ? count : 0
                }
                if let failure { throw failure }
                if ascii { return text }
                // Not ASCII, or longer than it said: read again, validated as UTF-8.
                guard lseek(fd, 0, SEEK_SET) == 0 else { throw Errno.current }
            }
            return String(validating: try readAll(fd, limit: limit), as: UTF8.self)
        }
    }

    /// Reads into `buffer` until it is full, EOF or an error: how much was read, and the error.
    static func fill(_ fd: Int32, _ buffer: UnsafeMutableBufferPointer<UInt8>) -> (Int, Errno?) {
        var count = 0
        while count < buffer.count {
            do throws(Errno) {
                let n = try Sys.read(fd, into: UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[count...])))
                if n == 0 { break }
                count += n
            } catch {
                return (count, error)
            }
        }
        return (count, nil)
    }

    /// No byte with the high bit set (8 at a time): valid UTF-8 as it stands.
    static func isASCII(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let raw = UnsafeRawPointer(base)
        var i = 0
        var high: UInt64 = 0
        while i + 8 <= bytes.count {
            high |= raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < bytes.count {
            high |= UInt64(bytes[i])
            i += 1
        }
        return high & 0x8080_8080_8080_8080 == 0
    }

    /// Opens `path` for reading (a directory refused; a FIFO read blocking once open) and
    /// hands `body` the descriptor and, for a regular file, its size (else 0).
    static func withFile<T>(_ path: String, _ body: (Int32, Int) throws(Errno) -> T) throws(StigmerError) -> T {
        let fd: Int32
        do { fd = try Sys.open(path, O_RDONLY | O_NONBLOCK) } catch {
            throw StigmerError(error == .notFound ? .dataError : .ioError,
                               "cannot open \(quoted(path)); check the path", cause: error.description)
        }
        defer { Sys.close(fd) }
        do {
            let st = try Sys.fstat(fd)
            if st.st_mode & S_IFMT == S_IFDIR {
                throw StigmerError.data("\(quoted(path)) is a directory; give a file")
            }
            // Opened non-blocking so a FIFO with no writer cannot hang the open; a pipe
            // (`--secret-file <(cmd)`) is then read blocking, to EOF, however slow its writer.
            if st.st_mode & S_IFMT == S_IFIFO {
                let flags = fcntl(fd, F_GETFL)
                if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
            }
            return try body(fd, st.st_mode & S_IFMT == S_IFREG ? Int(st.st_size) : 0)
        } catch let e as Errno {
            throw StigmerError(.ioError, "cannot read \(quoted(path))", cause: e.description)
        } catch let e as StigmerError {
            throw e
        } catch {
            throw StigmerError(.ioError, "cannot read \(quoted(path))")
        }
    }
}

/// Messages for the user on stderr (fd 2). Written with one `write` per line so lines from
/// concurrent processes do not interleave mid-line.
public enum Stderr {
    public static func line(_ text: String) {
        try? IO.writeAll(2, text + "\n")
    }
}

/// Directory listings.
public enum Directory {
    /// The names in `path` (no `.` or `..`), or nil when `path` is not a directory.
    public static func entries(_ path: String) throws(StigmerError) -> [String]? {
        guard let dir = opendir(path) else {
            let e = Errno.current
            if e.rawValue == ENOTDIR || e.rawValue == ENOENT { return nil }
            throw StigmerError(.ioError, "cannot read \(quoted(path))", cause: e.description)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
