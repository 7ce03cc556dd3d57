// swift-tools-version:6.1
import PackageDescription

// Dependencies point one way, downward (STYLE.md); each module sees only those above it:
//   StigmerCore     model, merge, placeholders, env files, templates (no I/O, no Foundation)
//   StigmerSystem   thin Glibc wrappers, control variables, locked memory (SecretBytes)
//   StigmerCrypto   AES-GCM sealing, keys, HPKE delivery, execution tokens, integrity tags, the fetch frame
//   StigmerManifests YAML/JSON documents, manifests, MCP configs, env files from disk
//   StigmerStore    the Store protocol, in-memory and SQLite stores, where a store is
//   StigmerEngine   apply, merge, contexts, opening values into SecretBytes
//   StigmerLaunch   the launch sequence (Pipeline.swift), exec/spawn/supervise, seccomp,
//                   the companion's processes (Companion.swift)
//   StigmerCLI      options and flag tables shared by both executables (ArgumentParser)
//   stigmer-exec, stigmer-exec-full   parse and wire only
// The companion adds StigmerRemote (gRPC, PostgreSQL) beside StigmerLaunch: it never
// reaches the launcher.
let package = Package(
    name: "stigmer-exec",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "stigmer-exec", targets: ["stigmer-exec"]),
        .executable(name: "stigmer-exec-full", targets: ["stigmer-exec-full"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // 4.x: 3.x imports full Foundation (~2 ms of start-up on every launch).
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The companion only (DESIGN.md §9): gRPC, NIO and PostgreSQL never reach the launcher.
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        // No traits: the default one pulls full Foundation in.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0", traits: []),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        // Already in the graph (gRPC, postgres-nio); named for the server's connection limiter.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // Already in the graph (gRPC's TLS, postgres-nio); named for the MCP HTTP bridge and
        // TLS to PostgreSQL.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        .target(name: "StigmerCore"),
        .target(name: "StigmerSystem", dependencies: ["StigmerCore", "CStigmerShims"]),
        .target(
            name: "StigmerCrypto",
            dependencies: [
                "StigmerCore", "StigmerSystem",
                // Also reached: its C module CCryptoBoringSSL (not a product of its own), for
                // SHA-256 and AES-GCM opens on the launch path (BoringSSL.swift).
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // libyaml (libyaml-dev) through a module map, as Yams wraps it — without Yams's
        // Swift layer, which links full Foundation into the launcher.
        .systemLibrary(name: "CYAML", providers: [.apt(["libyaml-dev"])]),
        .target(name: "StigmerManifests", dependencies: ["StigmerCore", "StigmerSystem", "CYAML"]),
        // The system SQLite (libsqlite3-dev), through a module map: the smallest binding,
        // nothing but the C API (TOOLCHAIN.md: 2 s clean build, no Foundation).
        .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "StigmerStore", dependencies: ["StigmerCore", "StigmerSystem", "CSQLite"]),
        .target(name: "CStigmerShims"),
        // The launcher's argv from the C runtime, not /proc/self/maps (argv.c says why).
        .target(name: "CStigmerArgv"),
        // What the fully static launcher defines instead of library members it never uses:
        // libdispatch (nodispatch.c) and SQLite's compiled-in extensions (sqlite.c).
        .target(name: "CStigmerStatic"),
        // libseccomp (libseccomp-dev), for building filters; loading is in CStigmerShims.
        .systemLibrary(name: "CSeccomp", providers: [.apt(["libseccomp-dev"])]),
        .target(
            name: "StigmerLaunch",
            dependencies: [
                "StigmerCore", "StigmerSystem", "StigmerCrypto", "StigmerManifests", "StigmerStore", "StigmerEngine",
                "CStigmerShims", "CSeccomp",
                .product(name: "Logging", package: "swift-log"),
            ],
            // A test-only pause while plaintext is held, compiled into debug builds only.
            swiftSettings: [.define("STIGMER_TEST_HOOKS", .when(configuration: .debug))]
        ),
        .target(name: "StigmerEngine", dependencies: ["StigmerCore", "StigmerSystem", "StigmerCrypto", "StigmerManifests", "StigmerStore"]),
        // Options, output and logging shared by both executables.
        .target(
            name: "StigmerCLI",
            dependencies: [
                "StigmerCore", "StigmerSystem", "StigmerCrypto", "StigmerManifests", "StigmerStore", "StigmerEngine",
                "StigmerLaunch",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "stigmer-exec",
            dependencies: [
                "StigmerCore", "StigmerSystem", "StigmerCrypto", "StigmerManifests",
                "StigmerStore", "StigmerLaunch", "StigmerEngine", "StigmerCLI", "CStigmerArgv", "CStigmerStatic",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The companion: gRPC service and client, PostgreSQL store, the fetch helper.
        .target(
            name: "StigmerRemote",
            dependencies: [
                "StigmerCore", "StigmerSystem", "StigmerCrypto", "StigmerStore", "StigmerEngine",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                // postgres-nio's TLS settings (sslmode, sslrootcert in the store URL).
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["Generated/README.md"]
        ),
        // The companion's stdio bridge to a remote MCP server (HTTP/1.1 and TLS on NIO).
        .target(
            name: "StigmerBridge",
            dependencies: [
                "StigmerCore", "StigmerSystem",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The companion's Kubernetes injector: the mutating webhook, `inject`, and the
        // registry client that reads an image's command (HTTP/1.1 and TLS on NIO, as the bridge).
        .target(
            name: "StigmerKube",
            dependencies: [
                "StigmerCore", "StigmerSystem", "StigmerCrypto", "StigmerManifests", "StigmerBridge",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "stigmer-exec-full",
            dependencies: [
                "StigmerCore", "StigmerSystem", "StigmerCrypto", "StigmerManifests", "StigmerStore", "StigmerEngine",
                "StigmerRemote", "StigmerCLI", "StigmerBridge", "StigmerKube",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The load generator of benchmarks/remote.sh (not shipped).
        .executableTarget(
            name: "stigmer-bench",
            dependencies: [
                "StigmerRemote", "StigmerCrypto",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ],
            path: "benchmarks/stigmer-bench"
        ),
        .testTarget(name: "StigmerCoreTests", dependencies: ["StigmerCore"]),
        .testTarget(name: "StigmerKubeTests", dependencies: ["StigmerKube", "StigmerCore", "StigmerManifests"]),
        .testTarget(name: "StigmerBridgeTests", dependencies: ["StigmerBridge", "StigmerCore"]),
        .testTarget(name: "StigmerCryptoTests", dependencies: ["StigmerCrypto", "StigmerSystem"]),
        .testTarget(name: "StigmerManifestsTests", dependencies: ["StigmerManifests"]),
        .testTarget(name: "StigmerStoreTests", dependencies: ["StigmerStore"]),
        .testTarget(name: "StigmerLaunchTests", dependencies: ["StigmerLaunch"]),
        .testTarget(name: "StigmerSystemTests", dependencies: ["StigmerSystem"]),
        .testTarget(name: "StigmerEngineTests", dependencies: ["StigmerEngine", "StigmerStore", "StigmerCrypto"]),
        .testTarget(name: "StigmerCLITests", dependencies: ["StigmerCLI", "StigmerLaunch", "StigmerEngine"]),
        .testTarget(
            name: "StigmerRemoteTests",
            dependencies: ["StigmerRemote", "StigmerStore", .product(name: "PostgresNIO", package: "postgres-nio"),
                           .product(name: "NIOPosix", package: "swift-nio")]
        ),
    ],
    swiftLanguageModes: [.v6]
)

// libFuzzer harnesses (FUZZING.md, `make fuzz`): only when STIGMER_FUZZ=1, so `swift build`,
// the tests and the launcher never see them. Each links only the modules its parser lives
// in (build time: 2 cores). Built with `-sanitize=fuzzer -sanitize=address` in .build-fuzz.
if Context.environment["STIGMER_FUZZ"] == "1" {
    func harness(_ name: String, _ modules: [Target.Dependency]) -> Target {
        .executableTarget(name: "fuzz-\(name)", dependencies: ["FuzzSupport"] + modules, path: "Fuzz/\(name)")
    }
    package.targets += [
        .target(name: "FuzzSupport", dependencies: ["StigmerCore", "StigmerManifests"], path: "Fuzz/Support"),
        harness("placeholders", ["StigmerCore"]),
        harness("envfile", ["StigmerCore"]),
        harness("json", ["StigmerCore", "StigmerManifests"]),
        harness("yaml", ["StigmerCore", "StigmerManifests"]),
        harness("resources", ["StigmerCore", "StigmerManifests"]),
        harness("mcpconfig", ["StigmerCore", "StigmerManifests"]),
        harness("sealed", ["StigmerCore", "StigmerCrypto"]),
        harness("keyfile", ["StigmerCore", "StigmerCrypto"]),
        harness("frame", ["StigmerCore", "StigmerCrypto"]),
        harness("arguments", ["StigmerCore", "StigmerEngine", "StigmerLaunch"]),
        harness("seccomp", ["StigmerCore", "StigmerManifests", "StigmerLaunch"]),
        harness("kube", ["StigmerCore", "StigmerManifests", "StigmerKube"]),
    ]
    // Only the harnesses and the modules they reach: a plain `swift build` then builds all
    // twelve in one plan (the CI smoke), and never the executables, gRPC or PostgreSQL.
    var reached: Set<String> = []
    func reach(_ name: String) {
        guard reached.insert(name).inserted, let target = package.targets.first(where: { $0.name == name }) else { return }
        for dependency in target.dependencies {
            switch dependency {
            case .targetItem(let name, _), .byNameItem(let name, _): reach(name)
            default: break
            }
        }
    }
    package.targets.filter { $0.name.hasPrefix("fuzz-") }.forEach { reach($0.name) }
    package.products = []
    package.targets.removeAll { !reached.contains($0.name) }
}
