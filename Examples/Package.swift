// swift-tools-version: 6.2
// Sluice's examples, a package of their own that depends on Sluice by path exactly as a user's
// package would: `cd Examples && swift build`, then `swift run custom-udp-service`, say. The XDP
// programs come built into Sluice (no make step).
import PackageDescription

let package = Package(
    name: "SluiceExamples",
    platforms: [.macOS(.v15)],
    // README: begin dependency
    dependencies: [
        .package(name: "Sluice", path: ".."),   // or .package(url: "https://…/sluice", from: "0.6.0")
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    ],
    // README: end
    targets: [
        // A custom UDP service over any backend.
        .executableTarget(
            name: "custom-udp-service",
            dependencies: [
                .product(name: "Sluice", package: "Sluice"), .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/CustomUDPService"),
        // A service on AF_XDP with a port of its own: program, UMEM, XSK and loop by hand.
        .executableTarget(
            name: "xdp-service",
            dependencies: [.product(name: "Sluice", package: "Sluice"), .product(name: "Logging", package: "swift-log")],
            path: "Sources/XDPService"),
        // Frames, batches, packet views and a stage pipeline, without a network.
        .executableTarget(
            name: "packet-basics",
            dependencies: [.product(name: "Sluice", package: "Sluice")],
            path: "Sources/PacketBasics"),
        // TCP echo over the async stream API.
        .executableTarget(
            name: "tcp-echo",
            dependencies: [.product(name: "Sluice", package: "Sluice"), .product(name: "Logging", package: "swift-log")],
            path: "Sources/TCPEcho"),
        // The DocC tutorial's last step (Sources/Sluice/Sluice.docc/Resources), built so it stays true.
        .executableTarget(
            name: "shout",
            dependencies: [
                .product(name: "Sluice", package: "Sluice"), .product(name: "SluicePrometheus", package: "Sluice"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"), .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Sources/Shout"),
        // TLS echo over the async edge (TLSListener, TLSConnection).
        .executableTarget(
            name: "tls-echo",
            dependencies: [.product(name: "Sluice", package: "Sluice"), .product(name: "Logging", package: "swift-log")],
            path: "Sources/TLSEcho"),
    ],
    swiftLanguageModes: [.v6]
)
