#if canImport(Glibc)
import Glibc
#endif
import StigmerCore
import StigmerSystem

/// The child's argv and envp, built in locked memory (SECURITY.md, step 4): a bump
/// allocator over one `LockedRegion`, sized exactly before anything is written.
public final class SecretArena {
    let region: LockedRegion
    public private(set) var used = 0

    /// `secretMemory`: for what outlives the launch (LockedRegion says why not always).
    public init(capacity: Int, secretMemory: Bool = false) throws(StigmerError) {
        region = try LockedRegion(capacity: capacity, secretMemory: secretMemory)
    }

    public var kind: LockedRegion.Kind { region.kind }
    public var capacity: Int { region.capacity }

    /// Copies the pieces in, one after another, NUL-terminated; returns the C string.
    public func cString(_ pieces: ArraySlice<ChildPiece>, from values: borrowing SecretBytes) throws(StigmerError) -> UnsafeMutablePointer<CChar> {
        let length = pieces.reduce(0) { $0 + $1.count } + 1
        let start = try reserve(length, alignment: 1)
        var offset = 0
        func copy(_ raw: UnsafeRawBufferPointer) {
            if let base = raw.baseAddress { (start + offset).copyMemory(from: base, byteCount: raw.count) }
            offset += raw.count
        }
        for piece in pieces {
            switch piece {
            case .text(let bytes): bytes.withUnsafeBytes { copy($0) }
            case .literal(var text): text.withUTF8 { copy(UnsafeRawBufferPointer($0)) }
            case .assignment(var name):
                name.withUTF8 { copy(UnsafeRawBufferPointer($0)) }
                start.storeBytes(of: UInt8(ascii: "="), toByteOffset: offset, as: UInt8.self)
                offset += 1
            case .value(let entry): values.withBytes(entry) { copy($0) }
            }
        }
        start.storeBytes(of: 0, toByteOffset: offset, as: UInt8.self)
        return start.assumingMemoryBound(to: CChar.self)
    }

    /// Copies `bytes` in, NUL-terminated (masking patterns).
    public func cString(_ bytes: [UInt8]) throws(StigmerError) -> UnsafeMutablePointer<CChar> {
        let start = try reserve(bytes.count + 1, alignment: 1)
        bytes.withUnsafeBytes { raw in
            if let base = raw.baseAddress { start.copyMemory(from: base, byteCount: raw.count) }
        }
        start.storeBytes(of: 0, toByteOffset: bytes.count, as: UInt8.self)
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
        guard start + length <= region.capacity else {
            throw StigmerError(.internalError, "secret memory area too small (\(region.capacity) bytes)")
        }
        used = start + length
        return region.base + start
    }

    /// Zeroes everything written so far (explicit_bzero: not optimised away).
    public func wipe() {
        region.wipe(used)
        used = 0
    }
}
