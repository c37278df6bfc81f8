// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Sluice",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Sluice", targets: ["Sluice"]),
        .library(name: "SluiceCore", targets: ["SluiceCore"]),
        .library(name: "SluicePackets", targets: ["SluicePackets"]),
        .library(name: "SluiceUDP", targets: ["SluiceUDP"]),
        .library(name: "SluiceSockets", targets: ["SluiceSockets"]),
        .library(name: "SluiceXDP", targets: ["SluiceXDP"]),
        .library(name: "SluiceURing", targets: ["SluiceURing"]),
        .library(name: "SluiceBench", targets: ["SluiceBench"]),
        .executable(name: "sluice", targets: ["SluiceCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        .target(
            name: "CSluice",
            linkerSettings: [
                .linkedLibrary("uring"), .linkedLibrary("xdp"), .linkedLibrary("bpf"),
                .linkedLibrary("ssl"), .linkedLibrary("crypto"),
            ]
        ),
        .target(name: "SluiceCore"),
        .target(name: "SluicePackets"),
        .target(name: "SluiceUDP", dependencies: ["SluiceCore", "SluicePackets"]),
        .target(name: "SluiceSockets", dependencies: ["SluiceCore", "SluicePackets", "SluiceUDP", "CSluice"]),
        .target(name: "SluiceXDP", dependencies: ["SluiceCore", "SluicePackets", "CSluice"]),
        .target(name: "SluiceURing", dependencies: ["SluiceCore", "SluicePackets", "SluiceUDP", "SluiceSockets", "CSluice"]),
        .target(
            name: "Sluice",
            dependencies: ["SluiceCore", "SluicePackets", "SluiceUDP", "SluiceSockets", "SluiceXDP", "SluiceURing", "CSluice"]),
        // `sluice bench`: the topology, generators and cells, and the report (table, JSON, SVG).
        .target(
            name: "SluiceBench",
            dependencies: ["Sluice", "CSluice", .product(name: "Histogram", package: "hdrhistogram-swift")]),
        .executableTarget(
            name: "SluiceCLI",
            dependencies: ["Sluice", "SluiceBench", "CSluice", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // Reference implementations and kernel-socket helpers shared by the test targets.
        .target(name: "SluiceTestSupport", dependencies: ["Sluice", "SluicePackets", "CSluice", "CSluiceTestSupport"],
                path: "Tests/SluiceTestSupport"),
        // A seccomp filter for tests that need a sandbox refusing io_uring.
        .target(name: "CSluiceTestSupport", path: "Tests/CSluiceTestSupport"),
        .testTarget(name: "SluiceBenchTests", dependencies: ["SluiceBench", "SluiceTestSupport"]),
        .testTarget(name: "SluiceCoreTests", dependencies: ["SluiceCore", "SluiceTestSupport"]),
        .testTarget(name: "SluicePacketsTests", dependencies: ["SluicePackets", "SluiceTestSupport"]),
        .testTarget(name: "SluiceUDPTests", dependencies: ["SluiceUDP", "SluicePackets", "SluiceCore", "SluiceTestSupport"]),
        .testTarget(
            name: "SluiceSocketsTests",
            dependencies: ["SluiceSockets", "SluiceUDP", "SluiceCore", "SluicePackets", "SluiceTestSupport"]),
        .testTarget(name: "SluiceIntegrationTests", dependencies: ["SluiceCLI", "Sluice", "SluicePackets", "SluiceTestSupport"]),
        .testTarget(
            name: "SluiceXDPTests",
            dependencies: ["SluiceXDP", "Sluice", "SluiceCore", "SluicePackets", "SluiceUDP", "SluiceTestSupport"]),
        .testTarget(
            name: "SluiceURingTests",
            dependencies: ["SluiceURing", "Sluice", "SluiceCore", "SluicePackets", "SluiceUDP", "SluiceTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
