import FuzzSupport
import StigmerCore
import StigmerLaunch
import StigmerManifests

/// OCI/Docker seccomp profiles (`--seccomp FILE`, a sandbox profile's `seccomp`): decoded
/// from JSON, then built with libseccomp into BPF (exported to a memfd, never loaded).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSeccomp(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = Fuzz.bytes(data, size)
    guard let documents = try? Loader.documents(Fuzz.text(bytes), file: "fuzz.json"), documents.count == 1 else { return 0 }
    let profile: SeccompProfile
    do { profile = try OCIProfile.decode(Field(root: documents[0], file: "fuzz.json")) } catch {
        Fuzz.expect(error.code == .dataError, "a bad profile is not a data error: \(error)")
        return 0
    }
    // Building is the slow part (~1 ms for Docker's 300 names): small profiles only, so
    // the decoder gets the executions. A profile that decodes either builds or fails closed
    // with an error; it never traps.
    guard profile.rules.count <= 24 else { return 0 }
    do {
        let filter = try profile.compile()
        Fuzz.expect(!filter.programs.isEmpty, "a compiled filter with no program")
    } catch {
        Fuzz.expect(error.code == .notPermitted, "a failed build is not a 77: \(error)")
    }
    return 0
}
