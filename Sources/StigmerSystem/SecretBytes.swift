#if canImport(Glibc)
import Glibc
#endif
import CStigmerShims
import StigmerCore

/// Memory for plaintext (SECURITY.md, order step 2): anonymous memory that is locked (mlock:
/// never swapped) and excluded from core dumps (MADV_DONTDUMP) in a process that is already
/// non-dumpable — or, for what is held while a child runs (`secretMemory`), a `memfd_secret`
/// mapping, which is also out of the kernel's direct map (a kernel without it: the same
/// locked memory). Memory that cannot be locked fails: fail closed. Wiped with
/// `explicit_bzero` and unmapped when it ends.
///
/// Why not `memfd_secret` for everything: it hides the plaintext from root and the kernel,
/// which SECURITY.md puts out of scope, and each page it hands out is taken out of the
/// direct map with a TLB flush on every core (an IPI each, dearer in a VM: 0.21 ms of a
/// 2.5 ms launch here, benchmarks/RESULTS.md). A launch holds its plaintext for about a
/// millisecond before the child holds it in ordinary memory, readable by root in
/// /proc/PID/environ, for its whole life; the context server held it per fetch. What a
/// supervisor keeps while its child runs (`--mask-output`'s patterns) keeps `memfd_secret`.
public struct LockedRegion: ~Copyable {
    public enum Kind: String, Sendable { case memfdSecret = "memfd_secret", lockedAnonymous = "mlock+MADV_DONTDUMP" }

    public let base: UnsafeMutableRawPointer
    public let capacity: Int
    public let kind: Kind

    public init(capacity requested: Int, secretMemory: Bool = false) throws(StigmerError) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let size = max(page, (requested + page - 1) / page * page)
        capacity = size
        let fd = secretMemory ? stigmer_memfd_secret() : -1
        if fd >= 0 {
            defer { Sys.close(fd) }
            guard ftruncate(fd, off_t(size)) == 0 else {
                throw StigmerError(.notPermitted, "cannot size the secret memory area; refusing to hold secrets", cause: Errno.current.description)
            }
            let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            guard let p, p != MAP_FAILED else {
                throw StigmerError(.notPermitted, "cannot map the secret memory area (RLIMIT_MEMLOCK, `ulimit -l`?); refusing to hold secrets", cause: Errno.current.description)
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

    /// Zeroes the first `count` bytes (explicit_bzero: never optimised away).
    public func wipe(_ count: Int) {
        if count > 0 { explicit_bzero(base, min(count, capacity)) }
    }

    deinit {
        explicit_bzero(base, capacity)
        munmap(base, capacity)
    }
}

/// The one owner of opened plaintext, from the moment a value is decrypted until it is
/// copied into the child's environment (SECURITY.md, step 3). Non-copyable, so no second
/// copy can be made by assignment; its bytes live in a `LockedRegion`, wiped when it ends.
/// Values are appended and addressed by range; names and flags are not secret.
public struct SecretBytes: ~Copyable {
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var range: Range<Int>
        public var isSecret: Bool
    }

    var region: LockedRegion
    public private(set) var count = 0
    public private(set) var entries: [Entry] = []

    public init(capacity: Int = 4096) throws(StigmerError) {
        region = try LockedRegion(capacity: capacity)
    }

    public var kind: LockedRegion.Kind { region.kind }
    public var names: [String] { entries.map(\.name) }

    /// Appends `bytes` as the value of `name`. Grows by moving into a larger region; the
    /// old one is wiped as it ends.
    public mutating func append(_ name: String, isSecret: Bool, _ bytes: UnsafeRawBufferPointer) throws(StigmerError) {
        try reserve(bytes.count)
        if let source = bytes.baseAddress, bytes.count > 0 { (region.base + count).copyMemory(from: source, byteCount: bytes.count) }
        entries.append(Entry(name: name, range: count..<(count + bytes.count), isSecret: isSecret))
        count += bytes.count
    }

    /// Appends a value that is not secret (a plain value of the context).
    public mutating func append(_ name: String, isSecret: Bool, _ bytes: [UInt8]) throws(StigmerError) {
        let result = bytes.withUnsafeBytes { raw in catching { () throws(StigmerError) in try append(name, isSecret: isSecret, raw) } }
        try result.get()
    }

    mutating func reserve(_ more: Int) throws(StigmerError) {
        guard count + more > region.capacity else { return }
        let bigger = try LockedRegion(capacity: max(region.capacity * 2, count + more))
        bigger.base.copyMemory(from: region.base, byteCount: count)
        region = bigger  // the old region's deinit wipes it
    }

    /// The last value with this name.
    public func entry(_ name: String) -> Entry? { entries.last { $0.name == name } }

    public func withBytes<R, E: Error>(_ entry: Entry, _ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: region.base + entry.range.lowerBound, count: entry.range.count))
    }

    /// Every byte appended so far, in order (one message to seal).
    public func withAllBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: region.base, count: count))
    }

    /// Keeps only `names` (least privilege after a fetch that returned more); the rest is
    /// wiped where it lay.
    public mutating func keepOnly(_ names: Set<String>) {
        for entry in entries where !names.contains(entry.name) {
            explicit_bzero(region.base + entry.range.lowerBound, entry.range.count)
        }
        entries.removeAll { !names.contains($0.name) }
    }
}

extension Array where Element == UInt8 {
    /// Zeroes the bytes in place (explicit_bzero), then empties the array. For the few
    /// transient buffers that must exist outside a `SecretBytes` (key file bytes, say).
    public mutating func wipe() {
        withUnsafeMutableBytes { raw in if let base = raw.baseAddress { explicit_bzero(base, raw.count) } }
        removeAll()
    }
}

/// Runs `body`, carrying its typed error through APIs that only `rethrows` (withUnsafeBytes).
public func catching<R>(_ body: () throws(StigmerError) -> R) -> Result<R, StigmerError> {
    do throws(StigmerError) { return .success(try body()) } catch { return .failure(error) }
}
