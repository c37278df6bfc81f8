#if canImport(Glibc)
import Glibc
#endif
import Sluice
import SluicePrometheus
import SluiceTestSupport
import Testing

/// `Examples/` is a package of its own that depends on Sluice by path, as a user's package
/// would: it must build from this checkout with nothing run before (no `make bpf`: the XDP
/// programs come embedded), its AF_XDP example must serve, and the README's code must be the
/// examples' code.
@Suite(.serialized) struct ExamplesTests {
    static let root: String = {
        var path = #filePath
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path
    }()

    /// The region of `file` between `// README: begin NAME` and `// README: end`.
    static func region(_ name: String, of file: String) throws -> String {
        let text = try #require(readTextFile(root + "/" + file), "cannot read \(file)")
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex { $0.trimmingLeadingSpaces == "// README: begin \(name)" },
                                 "\(file) has no region \(name)")
        let end = try #require(lines[start...].firstIndex { $0.trimmingLeadingSpaces == "// README: end" })
        return lines[(start + 1)..<end].joined(separator: "\n")
    }

    @Test func everyReadmeBlockMarkedAsAnExampleIsThatExamplesCode() throws {
        let readme = try #require(readTextFile(Self.root + "/README.md"))
        let lines = readme.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var checked = 0
        for (index, line) in lines.enumerated() where line.hasPrefix("<!-- from Examples/") {
            // <!-- from Examples/Sources/X/main.swift#name -->, then a ```swift block.
            let reference = line.dropFirst("<!-- from ".count).dropLast(" -->".count)
            let parts = reference.split(separator: "#")
            let code = try Self.region(String(parts[1]), of: String(parts[0]))
            #expect(lines[index + 1] == "```swift", "a code block must follow \(line)")
            let end = try #require(lines[(index + 2)...].firstIndex(of: "```"))
            let block = lines[(index + 2)..<end].joined(separator: "\n")
            #expect(block == code, "README block at line \(index + 2) differs from \(reference)")
            checked += 1
        }
        #expect(checked >= 4, "the README shows the examples")
    }

    @Test(.timeLimit(.minutes(20)))
    func theExamplesPackageBuildsAndItsXDPServiceServes() throws {
        let scratch = Self.root + "/.build/examples"
        let command = "cd '\(Self.root)/Examples' && swift build --scratch-path '\(scratch)'"
        var build = try ChildProcess("/bin/sh", ["-c", command])
        var status = build.waitForExit(timeout: .seconds(1100))
        if status != 0, build.text.contains("missing inputs") || build.text.contains("no such module")
            || build.text.contains("in scope") {
            // A scratch directory left by an earlier run can plan files since moved in Sluice, or
            // miss a module or file since added to it (SwiftPM does not notice a path dependency's
            // files moving or appearing, nor its new targets): build afresh once.
            build = try ChildProcess("/bin/sh", ["-c", "rm -rf '\(scratch)' && " + command])
            status = build.waitForExit(timeout: .seconds(1100))
        }
        try #require(status == 0, "cd Examples && swift build failed:\n\(build.text.suffix(4000))")
        for example in ["custom-udp-service", "tcp-echo", "xdp-service", "shout", "tls-echo"] {
            #expect(access(scratch + "/debug/" + example, X_OK) == 0, "\(example) was built")
        }

        let topology = try TestTopology(.init(suffix: "x\(getpid())"))
        defer { topology.destroy() }
        // nsenter keeps the mount namespace (bpffs), unlike `ip netns exec`.
        let service = try ChildProcess("/usr/bin/nsenter", [
            "--net=/run/netns/\(topology.serverNamespace)", scratch + "/debug/xdp-service", topology.serverInterface, "9000", "3",
        ])
        let target = IPEndpoint(address: .v4(topology.serverIPv4), port: 9000)
        let replies = try TestTopology.run(inNamespace: topology.clientNamespace) { () -> Int in
            let client = KernelUDPSocket(bind: IPEndpoint(address: .v4(topology.clientIPv4), port: 0),
                                         receiveTimeout: .milliseconds(200))
            var answered = 0
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(2)
            // Until the program is attached the kernel answers with ICMP unreachable: keep trying.
            while clock.now < deadline, answered < 20 {
                client.send(Array("hello \(answered)".utf8), to: target)
                if let reply = client.receive(), reply.bytes == Array("HELLO \(answered)".utf8) { answered += 1 }
            }
            return answered
        }
        #expect(replies == 20, "the AF_XDP example answered \(replies) of 20: \(service.text)")
        #expect(service.waitForExit(timeout: .seconds(20)) == 0, "\(service.text)")
        #expect(service.text.contains("served"), "\(service.text)")

        // SIGTERM stops it as its time would, and it leaves the interface as it found it.
        let stopped = try ChildProcess("/usr/bin/nsenter", [
            "--net=/run/netns/\(topology.serverNamespace)", scratch + "/debug/xdp-service", topology.serverInterface, "9000", "60",
        ])
        let answered = try TestTopology.run(inNamespace: topology.clientNamespace) { () -> Bool in
            let client = KernelUDPSocket(bind: IPEndpoint(address: .v4(topology.clientIPv4), port: 0),
                                         receiveTimeout: .milliseconds(200))
            for _ in 0..<50 {
                client.send(Array("up?".utf8), to: target)
                if client.receive()?.bytes == Array("UP?".utf8) { return true }
            }
            return false
        }
        #expect(answered, "\(stopped.text)")
        #expect(stopped.stop() == 0, "\(stopped.text)")
        #expect(stopped.text.contains("served"), "\(stopped.text)")
        let left = try ChildProcess(sluice: ["xdp", "status", "--netns", topology.serverNamespace])
        #expect(left.waitForExit() == 0)
        #expect(left.text.contains("no interface in this namespace has a sluice XDP program"), "\(left.text)")

        // Ordinary failures are one line and status 1, not a trap at the top level.
        for (example, arguments, expected) in [
            ("xdp-service", ["no-such-dev", "9000"], "no interface named 'no-such-dev'"),
            ("custom-udp-service", ["bogus", "127.0.0.1:9000"], "no backend named 'bogus'"),
            ("tls-echo", ["127.0.0.1:0", "/no/cert.pem", "/no/key.pem", "1"], "cannot open it: No such file or directory"),
        ] {
            let failed = try ChildProcess("/usr/bin/nsenter", ["--net=/run/netns/\(topology.serverNamespace)", scratch + "/debug/" + example]
                                          + arguments)
            #expect(failed.waitForExit(timeout: .seconds(20)) == 1, "\(example): \(failed.text)")
            #expect(failed.text.contains(expected) && !failed.text.contains("Fatal error"), "\(example): \(failed.text)")
        }

        // The DocC tutorial's service: shouts back, and counts it in its metrics.
        let shout = try ChildProcess("/usr/bin/nsenter", [
            "--net=/run/netns/\(topology.serverNamespace)", scratch + "/debug/shout", "socket", "\(topology.serverIPv4):9001",
        ])
        let shouted = try TestTopology.run(inNamespace: topology.clientNamespace) { () -> [UInt8]? in
            let client = KernelUDPSocket(bind: IPEndpoint(address: .v4(topology.clientIPv4), port: 0),
                                         receiveTimeout: .milliseconds(200))
            // Until it listens, the kernel answers with ICMP unreachable: keep asking.
            for _ in 0..<50 {
                client.send(Array("hello, sluice".utf8), to: IPEndpoint(address: .v4(topology.serverIPv4), port: 9001))
                if let reply = client.receive() { return reply.bytes }
            }
            return nil
        }
        #expect(shouted == Array("HELLO, SLUICE!".utf8))
        let metrics = try MetricsCommandTests.scrape("http://127.0.0.1:9464/metrics", in: topology.serverNamespace,
                                                     until: "sluice_service_shouted_total", reaches: 1)
        #expect(MetricsCommandTests.sum(metrics, "sluice_service_shouted_total") >= 1, "\(metrics.filter { $0.name.hasPrefix("sluice_service") })")
        #expect(shout.stop() == 0, "\(shout.text)")
        #expect(shout.text.contains("shouting on") && shout.text.contains("frames: all returned to their pools"), "\(shout.text)")
    }
}

extension Substring {
    fileprivate var trimmingLeadingSpaces: Substring { drop { $0 == " " } }
}
