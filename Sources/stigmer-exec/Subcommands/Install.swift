import ArgumentParser
import StigmerCLI
import StigmerCore
import StigmerSystem

#if canImport(Glibc)
import Glibc
#endif

/// What the Kubernetes injector's init container runs: copies this binary, and the
/// companion and `lib/` beside it when present (the bundle `scripts/k8s-bundle.sh`
/// makes), into a directory the pod's containers mount read-only. An image holding only
/// this static binary has no `cp`.
struct InstallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Copy stigmer-exec (and stigmer-exec-full and lib/ beside it) into DIR, mode 0555.",
        discussion: """
            Each file is written under a temporary name and renamed, so a reader never sees \
            half a binary. DIR must exist (in Kubernetes: an emptyDir).
            """)

    @Argument(help: ArgumentHelp("Where to copy to.", valueName: "DIR")) var directory: String

    func run() throws {
        guard let exe = Self.ownPath() else {
            throw StigmerError(.ioError, "cannot read /proc/self/exe; is /proc mounted?")
        }
        guard (try? Sys.stat(directory)).map({ $0.st_mode & S_IFMT == S_IFDIR }) == true else {
            throw StigmerError.notFound("\(quoted(directory)) is not a directory; create it (in Kubernetes, mount an emptyDir there)")
        }
        let source = String(exe[..<(exe.lastIndex(of: "/") ?? exe.startIndex)])
        var copied = [try Self.copy(from: "/proc/self/exe", to: directory + "/stigmer-exec")]
        if (try? Sys.stat(source + "/stigmer-exec-full")) != nil {
            copied.append(try Self.copy(from: source + "/stigmer-exec-full", to: directory + "/stigmer-exec-full"))
        }
        if let libraries = try Directory.entries(source + "/lib") {
            do { try Sys.mkdir(directory + "/lib", 0o755) } catch where error != .exists {
                throw StigmerError.cannotWrite("cannot create \(quoted(directory + "/lib"))", error)
            } catch {}
            // A lib that is a symbolic link would send the libraries elsewhere.
            guard (try? Sys.lstat(directory + "/lib")).map({ $0.st_mode & S_IFMT == S_IFDIR }) == true else {
                throw StigmerError(.notPermitted, "\(quoted(directory + "/lib")) is not a directory (a symbolic link?); install into an empty directory")
            }
            for name in libraries.sorted() {
                copied.append(try Self.copy(from: "\(source)/lib/\(name)", to: "\(directory)/lib/\(name)"))
            }
        }
        Stderr.line("stigmer-exec: installed \(copied.count) file\(copied.count == 1 ? "" : "s") in \(directory)")
    }

    static func ownPath() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Copies one file (following a symbolic link, as the loader would) through the kernel.
    static func copy(from source: String, to destination: String) throws(StigmerError) -> String {
        let temporary = destination + ".partial"
        do throws(Errno) {
            let input = try Sys.open(source, O_RDONLY | O_CLOEXEC)
            defer { Sys.close(input) }
            let size = Int(try Sys.fstat(input).st_size)
            try? Sys.unlink(temporary)
            let output = try Sys.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o555)
            defer { Sys.close(output) }
            var done = 0
            while done < size {
                let n = sendfile(output, input, nil, size - done)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw n == 0 ? Errno(EIO) : Errno.current }
                done += n
            }
            guard fchmod(output, 0o555) == 0 else { throw Errno.current }
            guard rename(temporary, destination) == 0 else { throw Errno.current }
        } catch {
            try? Sys.unlink(temporary)
            throw StigmerError.cannotWrite("cannot copy \(quoted(source)) to \(quoted(destination))", error)
        }
        return destination
    }
}
