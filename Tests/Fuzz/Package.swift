// swift-tools-version: 6.2
// libFuzzer targets for every parser of untrusted bytes, a package of its own so the fuzzing
// flags (`-sanitize=fuzzer,address`) never reach the main build: `make fuzz SECONDS=N` builds it
// with them and runs each target, seeded from Corpus/<target>.
import PackageDescription

let fuzzer: [LinkerSetting] = [.unsafeFlags(["-sanitize=fuzzer,address", "-use-ld=lld"])]

func fuzzTarget(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .executableTarget(name: name, dependencies: ["FuzzDriver"] + dependencies, path: "Sources/\(name)",
                      swiftSettings: [.unsafeFlags(["-sanitize=fuzzer,address"])], linkerSettings: fuzzer)
}

let package = Package(
    name: "SluiceFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "Sluice", path: "../..")],
    targets: [
        .target(name: "FuzzDriver", path: "Sources/FuzzDriver"),
        fuzzTarget("fuzz-udp-stage", [.product(name: "SluiceUDP", package: "Sluice"), .product(name: "SluicePackets", package: "Sluice")]),
        fuzzTarget("fuzz-dns-message", [.product(name: "SluiceDNS", package: "Sluice")]),
        fuzzTarget("fuzz-dns-zone", [.product(name: "SluiceDNS", package: "Sluice")]),
        fuzzTarget("fuzz-dns-responder", [.product(name: "SluiceDNS", package: "Sluice")]),
        fuzzTarget("fuzz-resolver-configuration", [.product(name: "SluiceDNS", package: "Sluice")]),
        fuzzTarget("fuzz-metrics-text", [.product(name: "SluicePrometheus", package: "Sluice")]),
        fuzzTarget("fuzz-addresses", [.product(name: "SluicePackets", package: "Sluice")]),
        fuzzTarget("fuzz-reassembly", [.product(name: "SluiceHost", package: "Sluice"), .product(name: "SluiceCore", package: "Sluice")]),
        fuzzTarget("fuzz-tls-server", [.product(name: "SluiceTLS", package: "Sluice")]),
        fuzzTarget("fuzz-control-messages", [.product(name: "SluiceSystem", package: "Sluice"), .product(name: "SluicePackets", package: "Sluice")]),
        fuzzTarget("fuzz-virtio-net", [.product(name: "SluiceTUN", package: "Sluice"), .product(name: "SluiceCore", package: "Sluice")]),
        fuzzTarget("fuzz-host-stage", [.product(name: "SluiceHost", package: "Sluice"), .product(name: "SluiceUDP", package: "Sluice"),
                                       .product(name: "SluiceCore", package: "Sluice"), .product(name: "SluicePackets", package: "Sluice")]),
        fuzzTarget("fuzz-number-list", [.product(name: "SluiceSystem", package: "Sluice")]),
    ],
    swiftLanguageModes: [.v6]
)
