// swift-tools-version: 6.1
import PackageDescription

// Sluice's micro-benchmarks, kept in their own package so that the main package's build and
// tests never resolve or compile the benchmark dependency.
let package = Package(
    name: "SluiceBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Sluice", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "PacketPath",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "SluiceCore", package: "Sluice"),
                .product(name: "SluicePackets", package: "Sluice"),
                .product(name: "SluiceUDP", package: "Sluice"),
                .product(name: "SluiceDNS", package: "Sluice"),
                .product(name: "SluiceTLS", package: "Sluice"),
                .product(name: "SluiceSystem", package: "Sluice"),
                "KernelRings",
            ],
            path: "Benchmarks/PacketPath",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // The AF_XDP and io_uring ring fixtures of PacketPath's ring benchmarks. A module of its
        // own, with the C modules imported only internally, so no C type reaches PacketPath.
        .target(
            name: "KernelRings",
            dependencies: [.product(name: "SluiceURing", package: "Sluice"), .product(name: "SluiceXDP", package: "Sluice")],
            path: "Benchmarks/KernelRings",
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
