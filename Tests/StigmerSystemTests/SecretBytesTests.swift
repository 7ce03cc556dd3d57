import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import StigmerSystem

@Suite("SecretBytes and control variables")
struct SecretBytesTests {
    @Test func appendsGrowsAndKeeps() throws {
        var bytes = try SecretBytes(capacity: 8)
        try bytes.append("A", isSecret: true, Array("first".utf8))
        try bytes.append("B", isSecret: false, [UInt8](repeating: 0x62, count: 10_000))  // grows
        try bytes.append("C", isSecret: true, [])
        #expect(bytes.names == ["A", "B", "C"])
        #expect(bytes.withBytes(bytes.entry("A")!) { Array($0) } == Array("first".utf8))
        #expect(bytes.entry("B")!.range.count == 10_000)
        #expect(bytes.entry("C")!.range.isEmpty)
        bytes.keepOnly(["B"])
        #expect(bytes.names == ["B"])
        #expect(bytes.entry("A") == nil)
    }

    @Test func arrayWipeClears() {
        var a: [UInt8] = [1, 2, 3]
        a.wipe()
        #expect(a.isEmpty)
    }

    @Test func emptyMeansUnset() {
        setenv("STIGMER_EXECUTION_ID", "", 1)
        #expect(ControlVariable.executionID.value == nil)
        #expect(ControlVariable.executionID.or("x") == "x")
        setenv("STIGMER_EXECUTION_ID", "e1", 1)
        #expect(ControlVariable.executionID.value == "e1")
        #expect(ControlVariable.executionID.or(nil) == "e1")
        unsetenv("STIGMER_EXECUTION_ID")
    }
}
