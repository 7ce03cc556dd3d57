#if canImport(Glibc)
import Glibc
#endif
import CStigmerShims
import StigmerCore

/// SECURITY.md step 1, for every process of both executables (promise 7): not dumpable —
/// so no other process of this user can ptrace it or read its `/proc/PID/mem` and
/// `environ` — and no core file, from the first instructions of `main`.
public enum SelfProtection {
    nonisolated(unsafe) static var inheritedCoreLimit = rlimit(rlim_cur: 0, rlim_max: 0)

    /// First thing in `main`: non-dumpable, soft core limit 0 (the hard limit is kept
    /// until `finish`, so `run --allow-core-dumps` can still give the child its cores).
    public static func begin() throws(StigmerError) {
        guard stigmer_set_dumpable(0) == 0 else {
            throw StigmerError(.notPermitted, "cannot make stigmer-exec non-dumpable; refusing to run", cause: Errno.current.description)
        }
        _ = getrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &inheritedCoreLimit)
        var limit = rlimit(rlim_cur: 0, rlim_max: inheritedCoreLimit.rlim_max)
        guard setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &limit) == 0 else {
            throw StigmerError(.notPermitted, "cannot disable core dumps; refusing to run", cause: Errno.current.description)
        }
    }

    /// Before any secret is in memory: core limit 0, soft and hard (inherited by the
    /// child) — or, with `allowCoreDumps`, the inherited limit back for the child.
    public static func finish(allowCoreDumps: Bool = false) throws(StigmerError) {
        guard stigmer_set_dumpable(0) == 0 else {
            throw StigmerError(.notPermitted, "cannot make the launcher non-dumpable; refusing to hold secrets", cause: Errno.current.description)
        }
        var limit = allowCoreDumps ? inheritedCoreLimit : rlimit(rlim_cur: 0, rlim_max: 0)
        guard setrlimit(__rlimit_resource_t(RLIMIT_CORE.rawValue), &limit) == 0 else {
            throw StigmerError(.notPermitted, "cannot disable core dumps; refusing to hold secrets", cause: Errno.current.description)
        }
    }
}
