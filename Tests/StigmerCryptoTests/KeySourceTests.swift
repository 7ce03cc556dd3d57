#if canImport(Glibc)
import Glibc
#endif
import Testing
import StigmerCore
import StigmerSystem
@testable import StigmerCrypto

@Suite("Keys", .serialized)
struct KeySourceTests {
    func temporaryHome() -> StigmerHome {
        var template = Array("/tmp/stigmer-test-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        return StigmerHome(path: dir + "/home")
    }

    func expectError(_ body: () throws -> Void, containing: String) {
        do {
            try body()
            Issue.record("no error")
        } catch let error as StigmerError {
            #expect(error.exitStatus == 77)
            #expect(error.message.contains(containing), "\(error.message)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func parseForms() throws {
        let key = EncryptionKey.generate()
        #expect(try KeyRing.parse(Array((key.base64 + "\n").utf8), source: "t").newest.id == key.id)
        let raw = key.key.withUnsafeBytes { Array($0) }
        #expect(try KeyRing.parse(raw, source: "t").newest.id == key.id)
        let second = EncryptionKey.generate()
        let ring = try KeyRing.parse(Array("# keys\n\(key.base64)\n\n\(second.base64)\n".utf8), source: "t")
        #expect(ring.keys.map(\.id) == [key.id, second.id])
        expectError({ _ = try KeyRing.parse(Array("not-base64!!".utf8), source: "t") }, containing: "not valid base64")
        expectError({ _ = try KeyRing.parse(Array(Base64.encode([UInt8](repeating: 1, count: 16)).utf8), source: "t") }, containing: "decodes to 16 bytes")
        expectError({ _ = try KeyRing.parse([0, 1, 2], source: "t") }, containing: "binary")
        expectError({ _ = try KeyRing.parse(Array("\n".utf8), source: "t") }, containing: "empty")
    }

    @Test func keyFileLifecycleAndPermissions() throws {
        let home = temporaryHome()
        let key = try KeySource.createKeyFile(home: home)
        let st = try Sys.lstat(home.keyFile)
        #expect(st.st_mode & 0o7777 == 0o600)
        #expect(try Sys.lstat(home.path).st_mode & 0o7777 == 0o700)
        #expect(try KeySource.fromFile(home.keyFile).newest.id == key.id)
        // Never overwrites.
        expectError({ _ = try KeySource.createKeyFile(home: home) }, containing: "already exists")
        #expect(try KeySource.fromFile(home.keyFile).newest.id == key.id)
        // 0400 is fine; group/other bits are refused with the fix.
        chmod(home.keyFile, 0o400)
        #expect(try KeySource.fromFile(home.keyFile).newest.id == key.id)
        for mode: mode_t in [0o644, 0o640, 0o604, 0o660, 0o700] {
            chmod(home.keyFile, mode)
            expectError({ _ = try KeySource.fromFile(home.keyFile) }, containing: "chmod 600")
        }
        chmod(home.keyFile, 0o600)
        expectError({ _ = try KeySource.fromFile(home.path + "/missing.key") }, containing: "key init")
    }

    @Test func laxHomeRefusedForInit() throws {
        let home = temporaryHome()
        try Sys.mkdir(home.path, 0o755)
        chmod(home.path, 0o755)
        expectError({ _ = try KeySource.createKeyFile(home: home) }, containing: "chmod 700")
    }

    @Test func descriptorIsReadOnceAndClosed() throws {
        let key = EncryptionKey.generate()
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        try IO.writeAll(fds[1], key.base64)
        close(fds[1])
        var pipeStat = stat()
        #expect(fstat(fds[0], &pipeStat) == 0)
        let ring = try KeySource.load(keyFD: fds[0], home: temporaryHome())
        #expect(ring.newest.id == key.id)
        #expect(ring.source == "--key-fd \(fds[0])")
        // Closed: the number is free, or (tests run in parallel) already reused for
        // something else — never still our pipe.
        var after = stat()
        #expect(fstat(fds[0], &after) == -1 || after.st_ino != pipeStat.st_ino || after.st_dev != pipeStat.st_dev)
    }
}
