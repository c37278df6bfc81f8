// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "Shout",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Sluice", path: "../sluice"),   // or .package(url: "https://…/sluice", from: "0.6.0")
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    ],
    targets: [
        .executableTarget(
            name: "shout",
            dependencies: [
                .product(name: "Sluice", package: "Sluice"),
                .product(name: "SluicePrometheus", package: "Sluice"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]),
    ],
    swiftLanguageModes: [.v6]
)
