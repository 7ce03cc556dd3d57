// swift-tools-version:6.1
import PackageDescription

// Dependencies point one way, downward (STYLE.md):
//   StigmerCore (model, merge, placeholders, env files; no I/O, no Foundation)
//     -> StigmerSystem (thin Glibc wrappers)  -> StigmerCrypto (AES-GCM, keys)
//     -> StigmerManifests (YAML/JSON documents)
//     -> StigmerStore (protocol, in-memory, SQLite)  -> StigmerLaunch (exec, spawn, supervise)
//     -> StigmerEngine (apply, contexts, resolve for launch)  -> stigmer-exec (CLI wiring only)
let package = Package(
    name: "stigmer-exec",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "stigmer-exec", targets: ["stigmer-exec"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        // 4.x: 3.x imports full Foundation (~2 ms of start-up on every launch).
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .target(name: "StigmerCore"),
        .target(name: "StigmerSystem", dependencies: ["StigmerCore"]),
        .target(
            name: "StigmerCrypto",
            dependencies: [
                "StigmerCore", "StigmerSystem",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(name: "StigmerManifests", dependencies: ["StigmerCore", "StigmerSystem", "Yams"]),
        // The system SQLite (libsqlite3-dev), through a module map: the smallest binding,
        // nothing but the C API (TOOLCHAIN.md: 2 s clean build, no Foundation).
        .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"])]),
        .target(name: "StigmerStore", dependencies: ["StigmerCore", "StigmerSystem", "CSQLite"]),
        .target(name: "CStigmerShims"),
        // libseccomp (libseccomp-dev), for building filters; loading is in CStigmerShims.
        .systemLibrary(name: "CSeccomp", providers: [.apt(["libseccomp-dev"])]),
        .target(
            name: "StigmerLaunch",
            dependencies: ["StigmerCore", "StigmerSystem", "CStigmerShims", "CSeccomp"],
            // A test-only pause while plaintext is held, compiled into debug builds only.
            swiftSettings: [.define("STIGMER_TEST_HOOKS", .when(configuration: .debug))]
        ),
        .target(name: "StigmerEngine", dependencies: ["StigmerCore", "StigmerSystem", "StigmerCrypto", "StigmerStore"]),
        .executableTarget(
            name: "stigmer-exec",
            dependencies: [
                "StigmerCore", "StigmerSystem", "StigmerCrypto", "StigmerManifests",
                "StigmerStore", "StigmerLaunch", "StigmerEngine",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "StigmerCoreTests", dependencies: ["StigmerCore"]),
        .testTarget(name: "StigmerCryptoTests", dependencies: ["StigmerCrypto", "StigmerSystem"]),
        .testTarget(name: "StigmerManifestsTests", dependencies: ["StigmerManifests"]),
        .testTarget(name: "StigmerStoreTests", dependencies: ["StigmerStore"]),
        .testTarget(name: "StigmerLaunchTests", dependencies: ["StigmerLaunch"]),
    ],
    swiftLanguageModes: [.v6]
)
