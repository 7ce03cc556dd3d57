import StigmerCore
import StigmerManifests
import Testing
@testable import StigmerLaunch

/// OCI/Docker seccomp profiles: what a hostile or mistaken profile gets is an error, never a trap.
@Suite("OCI seccomp profiles")
struct OCIProfileTests {
    func decode(_ json: String) throws(StigmerError) -> SeccompProfile {
        try OCIProfile.decode(Field(root: try Loader.documents(json, file: "p.json")[0], file: "p.json"))
    }

    /// Found by fuzzing (Fuzz/seccomp, FUZZING.md): an errno past Int32 trapped the launcher.
    @Test(arguments: [
        #"{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 18446744073701}"#,
        #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 4294967296}]}"#,
        #"{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": -1}"#,
    ])
    func errnoOutOfRangeIsAnError(json: String) {
        do {
            _ = try decode(json)
            Issue.record("decoded")
        } catch {
            #expect(error.code == .dataError && error.message.contains("expected an errno from 0 to 65535"), "\(error)")
        }
    }

    @Test func errnoInRangeIsKept() throws {
        let profile = try decode(#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 65535}]}"#)
        #expect(profile.defaultAction == .errno(38))
        #expect(profile.rules.first?.action == .errno(65535))
    }
}
