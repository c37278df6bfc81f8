// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "Sluice",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Sluice", targets: ["Sluice"]),
        .library(name: "SluiceCore", targets: ["SluiceCore"]),
        .library(name: "SluicePackets", targets: ["SluicePackets"]),
        .library(name: "SluiceSystem", targets: ["SluiceSystem"]),
        .library(name: "SluiceUDP", targets: ["SluiceUDP"]),
        .library(name: "SluiceSockets", targets: ["SluiceSockets"]),
        .library(name: "SluiceXDP", targets: ["SluiceXDP"]),
        .library(name: "SluiceURing", targets: ["SluiceURing"]),
        .library(name: "SluiceTUN", targets: ["SluiceTUN"]),
        .library(name: "SluiceHost", targets: ["SluiceHost"]),
        .library(name: "SluiceDNS", targets: ["SluiceDNS"]),
        .library(name: "SluiceTLS", targets: ["SluiceTLS"]),
        .library(name: "SluiceBench", targets: ["SluiceBench"]),
        .library(name: "SluicePrometheus", targets: ["SluicePrometheus"]),
        .executable(name: "sluice", targets: ["SluiceCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.70.0"),
        // `swift package generate-documentation` (DocC).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // One C module per native library, so a package links only what it uses.
        .target(name: "CSluiceSystem"),
        .target(name: "CSluiceURing", linkerSettings: [.linkedLibrary("uring")]),
        .systemLibrary(name: "CSluiceXDP", pkgConfig: "libxdp", providers: [.apt(["libxdp-dev", "libbpf-dev"])]),
        .systemLibrary(name: "CSluiceOpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .target(name: "SluiceCore", dependencies: [.product(name: "SystemPackage", package: "swift-system")]),
        .target(name: "SluicePackets", dependencies: ["SluiceCore"]),
        .target(name: "SluiceSystem", dependencies: ["SluiceCore", "SluicePackets", "CSluiceSystem", .product(name: "Logging", package: "swift-log")]),
        .target(name: "SluiceUDP", dependencies: ["SluiceCore", "SluicePackets"]),
        .target(name: "SluiceHost", dependencies: ["SluiceCore", "SluicePackets"]),
        .target(name: "SluiceDNS", dependencies: ["SluiceCore", "SluicePackets", "CSluiceOpenSSL"]),
        .target(name: "SluiceTLS", dependencies: ["SluiceCore", "CSluiceOpenSSL"]),
        .target(name: "SluiceSockets", dependencies: [.product(name: "Logging", package: "swift-log"), "SluiceCore", "SluicePackets", "SluiceSystem", "CSluiceSystem"]),
        .target(name: "SluiceXDP", dependencies: [.product(name: "Logging", package: "swift-log"), "SluiceCore", "SluicePackets", "SluiceSystem", "CSluiceSystem", "CSluiceXDP"],
                plugins: [.plugin(name: "SluiceBPFPlugin")]),
        // The XDP programs in bpf/, compiled with clang and embedded in SluiceXDP at build time.
        .executableTarget(name: "SluiceBPFEmbed"),
        .plugin(name: "SluiceBPFPlugin", capability: .buildTool(), dependencies: ["SluiceBPFEmbed"]),
        .target(name: "SluiceURing", dependencies: [.product(name: "Logging", package: "swift-log"), "SluiceCore", "SluicePackets", "SluiceSystem", "CSluiceSystem", "CSluiceURing"]),
        .target(name: "SluiceTUN", dependencies: ["SluiceCore", "SluicePackets", "SluiceSystem", "CSluiceSystem"]),
        .target(
            name: "Sluice",
            dependencies: ["SluiceCore", "SluicePackets", "SluiceSystem", "SluiceUDP", "SluiceSockets", "SluiceXDP", "SluiceURing", "SluiceTUN", "SluiceHost", "SluiceDNS", "SluiceTLS",
                           "CSluiceSystem", "CSluiceXDP", .product(name: "Logging", package: "swift-log"),
                           .product(name: "CoreMetrics", package: "swift-metrics"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        // A Prometheus registry served over HTTP at /metrics, and the scraper `sluice top` reads it with.
        .target(
            name: "SluicePrometheus",
            dependencies: [.product(name: "Prometheus", package: "swift-prometheus"), .product(name: "CoreMetrics", package: "swift-metrics"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio")]),
        // `sluice bench`: the topology, generators and cells, and the report (table, JSON, SVG).
        .target(
            name: "SluiceBench",
            dependencies: ["Sluice", "CSluiceSystem", "CSluiceXDP", .product(name: "Logging", package: "swift-log"),
                           .product(name: "Histogram", package: "hdrhistogram-swift")]),
        .executableTarget(
            name: "SluiceCLI",
            dependencies: ["Sluice", "SluiceBench", "SluiceTLS", "SluicePrometheus", "CSluiceSystem", .product(name: "Logging", package: "swift-log"),
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "CoreMetrics", package: "swift-metrics"), .product(name: "Prometheus", package: "swift-prometheus")]
        ),
        // Reference implementations and kernel-socket helpers shared by the test targets.
        .target(name: "SluiceTestSupport", dependencies: ["Sluice", "SluicePackets", "SluiceSystem", "CSluiceSystem", "CSluiceTestSupport"],
                path: "Tests/SluiceTestSupport"),
        // A host application that serves every backend with no logger: the test of a silent library runs it.
        .executableTarget(name: "SluiceSilenceProbe", dependencies: ["Sluice", "SluiceTestSupport"],
                          path: "Tests/SluiceSilenceProbe"),
        // A seccomp filter for tests that need a sandbox refusing io_uring.
        .target(name: "CSluiceTestSupport", path: "Tests/CSluiceTestSupport"),
        .testTarget(name: "SluiceBenchTests", dependencies: ["SluiceBench", "SluiceTestSupport"]),
        .testTarget(name: "SluiceCoreTests", dependencies: ["SluiceCore", "SluiceTestSupport"]),
        .testTarget(name: "SluicePacketsTests", dependencies: ["SluicePackets", "SluiceTestSupport"]),
        .testTarget(name: "SluiceDNSTests", dependencies: ["SluiceDNS", "Sluice", "SluicePackets", "SluiceCore", "SluiceTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "SluiceTLSTests", dependencies: ["SluiceTLS", "SluiceTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "SluicePrometheusTests",
                    dependencies: ["SluicePrometheus", "Sluice", .product(name: "Prometheus", package: "swift-prometheus"),
                                   .product(name: "CoreMetrics", package: "swift-metrics")]),
        .testTarget(name: "SluiceHostTests", dependencies: ["SluiceHost", "SluicePackets", "SluiceCore", "SluiceTestSupport"]),
        .testTarget(name: "SluiceUDPTests", dependencies: ["SluiceUDP", "SluicePackets", "SluiceCore", "SluiceTestSupport"]),
        .testTarget(
            name: "SluiceSocketsTests",
            dependencies: ["SluiceSockets", "SluiceUDP", "SluiceCore", "SluicePackets", "SluiceTestSupport"]),
        .testTarget(name: "SluiceIntegrationTests",
                    dependencies: ["SluiceCLI", "SluiceSilenceProbe", "Sluice", "SluiceBench", "SluicePackets", "SluiceTLS", "SluicePrometheus",
                                   "SluiceTestSupport",
                                   .product(name: "Logging", package: "swift-log"),
                                   .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        .testTarget(
            name: "SluiceXDPTests",
            dependencies: ["SluiceXDP", "Sluice", "SluiceCore", "SluicePackets", "SluiceSystem", "SluiceUDP", "SluiceTestSupport"]),
        .testTarget(name: "SluiceTUNTests", dependencies: ["SluiceTUN", "Sluice", "SluiceCore", "SluicePackets", "SluiceSystem", "SluiceTestSupport"]),
        .testTarget(
            name: "SluiceURingTests",
            dependencies: ["SluiceURing", "Sluice", "SluiceCore", "SluicePackets", "SluiceUDP", "SluiceTestSupport", "CSluiceURing"]),
    ],
    swiftLanguageModes: [.v6]
)
