#if canImport(Glibc)
import Glibc
#endif
import CStigmerShims
import StigmerCore
import StigmerSystem

/// Memory for plaintext (SECURITY.md, order step 2): a `memfd_secret` area — removed from
/// the kernel's direct map, never swapped, never in a core dump — or, where the kernel
/// lacks it (ENOSYS), anonymous memory that is locked (mlock) and excluded from dumps
/// (MADV_DONTDUMP). Memory that cannot be locked fails the launch: fail closed.
public final class SecretArena {
    public enum Kind: String, Sendable { case memfdSecret = "memfd_secret", lockedAnonymous = "mlock+MADV_DONTDUMP" }

    public let base: UnsafeMutableRawPointer
    public let capacity: Int
    public let kind: Kind
    public private(set) var used = 0

    public init(capacity requested: Int) throws(StigmerError) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let size = max(page, (requested + page - 1) / page * page)
        capacity = size
        let fd = stigmer_memfd_secret()
        if fd >= 0 {
            defer { Sys.close(fd) }
            guard ftruncate(fd, off_t(size)) == 0 else {
                throw StigmerError(.notPermitted, "cannot size the secret memory area; refusing to hold secrets", cause: Errno.current.description)
            }
            let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            guard let p, p != MAP_FAILED else {
                throw StigmerError(.notPermitted, "cannot map the secret memory area (RLIMIT_MEMLOCK?); refusing to hold secrets", cause: Errno.current.description)
            }
            base = p
            kind = .memfdSecret
        } else {
            let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let p, p != MAP_FAILED else {
                throw StigmerError(.notPermitted, "cannot allocate memory for secrets", cause: Errno.current.description)
            }
            guard madvise(p, size, MADV_DONTDUMP) == 0 else {
                let e = Errno.current
                munmap(p, size)
                throw StigmerError(.notPermitted, "cannot exclude secret memory from core dumps; refusing to hold secrets", cause: e.description)
            }
            guard mlock(p, size) == 0 else {
                let e = Errno.current
                munmap(p, size)
                throw StigmerError(.notPermitted, "cannot lock secret memory (raise RLIMIT_MEMLOCK, `ulimit -l`); refusing to hold secrets", cause: e.description)
            }
            base = p
            kind = .lockedAnonymous
        }
    }

    deinit {
        wipe()
        munmap(base, capacity)
    }

    /// Copies `bytes` in, NUL-terminated; returns the C string.
    public func cString(_ parts: [UInt8]...) throws(StigmerError) -> UnsafeMutablePointer<CChar> {
        let length = parts.reduce(0) { $0 + $1.count } + 1
        let start = try reserve(length, alignment: 1)
        var offset = 0
        for part in parts where !part.isEmpty {
            part.withUnsafeBytes { (start + offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            offset += part.count
        }
        start.storeBytes(of: 0, toByteOffset: offset, as: UInt8.self)
        return start.assumingMemoryBound(to: CChar.self)
    }

    /// Room for a NULL-terminated pointer array.
    public func pointerArray(count: Int) throws(StigmerError) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> {
        let raw = try reserve((count + 1) * MemoryLayout<UnsafeMutablePointer<CChar>?>.stride,
                              alignment: MemoryLayout<UnsafeMutablePointer<CChar>?>.alignment)
        let p = raw.bindMemory(to: UnsafeMutablePointer<CChar>?.self, capacity: count + 1)
        p.initialize(repeating: nil, count: count + 1)
        return p
    }

    func reserve(_ length: Int, alignment: Int) throws(StigmerError) -> UnsafeMutableRawPointer {
        let start = (used + alignment - 1) / alignment * alignment
        guard start + length <= capacity else {
            throw StigmerError(.internalError, "secret memory area too small (\(capacity) bytes)")
        }
        used = start + length
        return base + start
    }

    /// Zeroes everything written so far (explicit_bzero: not optimised away).
    public func wipe() {
        if used > 0 { explicit_bzero(base, used) }
        used = 0
    }
}
