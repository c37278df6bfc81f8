#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Sluice
import SluiceCore
import SluiceTestSupport
import Testing

/// Least privilege: `--user` after setup, the capability an error names, and the example
/// systemd units started under setpriv with exactly their capabilities.
@Suite("Least privilege", .serialized)
struct PrivilegeTests {
    /// Each thread's `Uid` and permitted and effective capability masks.
    static func threads(of pid: pid_t) -> [(name: String, uid: String, permitted: UInt64, effective: UInt64)] {
        statusFields(of: pid).compactMap { fields in
            guard let uid = fields["Uid"], let permitted = fields["CapPrm"].flatMap({ UInt64($0, radix: 16) }),
                  let effective = fields["CapEff"].flatMap({ UInt64($0, radix: 16) }) else { return nil }
            return (fields["Name"] ?? "?", uid, permitted, effective)
        }
    }

    /// Every thread's `/proc` status fields.
    static func statusFields(of pid: pid_t) -> [[String: String]] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.compactMap { task in
            guard let status = readTextFile("/proc/\(pid)/task/\(task)/status") else { return nil }
            var fields: [String: String] = [:]
            for line in status.split(separator: "\n") {
                let parts = line.split(separator: ":", maxSplits: 1)
                if parts.count == 2 { fields[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
            }
            return fields
        }
    }

    static func mask(_ capabilities: [Capability]) -> UInt64 {
        capabilities.reduce(0) { $0 | (1 << UInt64($1.rawValue)) }
    }

    /// `setpriv` as user nobody with exactly `capabilities` (inheritable, ambient and bounding), in `namespace`.
    static func unprivileged(_ capabilities: [String], in namespace: String?, _ command: [String]) -> [String] {
        let list = (["-all"] + capabilities.map { "+" + $0 }).joined(separator: ",")
        return (namespace.map { ["/usr/bin/nsenter", "--net=/run/netns/\($0)"] } ?? [])
            + ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=\(list)",
               "--ambient-caps=\(list)", "--bounding-set=\(list)"] + command
    }

    /// Echoes 1000 datagrams from the topology's client and checks the replies: all intact, and
    /// nearly all back (a loaded machine may drop a few on the veth pair).
    static func echoThroughServer(_ topology: TestTopology) throws {
        let client = try ChildProcess(sluice: ["udp-client", "--target", "\(topology.serverIPv4):9000", "--netns", topology.clientNamespace,
                                               "--count", "1000", "--window", "16", "--json"])
        #expect(client.waitForExit(timeout: .seconds(20)) == 0)
        let (_, report) = try JSONOutputTests.object(in: client.text)
        #expect(report["corrupt"] as? Int == 0 && (report["received"] as? Int ?? 0) >= 950, "\(client.text)")
    }

    static func run(_ command: [String]) throws -> ChildProcess {
        try ChildProcess(command[0], Array(command.dropFirst()))
    }

    @Test("udp-echo --user nobody on port 53: every thread is nobody with no capability, and it still answers")
    func userDropsEverything() throws {
        let namespace = try ScratchNamespace(prefix: "slpriv")
        let server = try ChildProcess(sluice: ["udp-echo", "--listen", "127.0.0.1:53", "--netns", namespace.name, "--workers", "2",
                                               "--user", "nobody", "--duration", "60", "--stats-interval", "0",
                                               "--metrics-listen", "127.0.0.1:9464"])
        let line = try #require(server.waitForLine(containing: "running as"), "\(server.text)")
        #expect(line.contains("running as nobody (uid 65534, gid 65534), capabilities: none"))
        let threads = Self.threads(of: server.pid)
        #expect(threads.count >= 4, "\(threads)")   // main, two workers, the metrics endpoint
        for thread in threads {
            #expect(thread.uid.split(separator: "\t").allSatisfy { $0 == "65534" }, "\(thread)")
            #expect(thread.permitted == 0 && thread.effective == 0, "\(thread)")
        }
        let client = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!) }
        client.send([1, 2, 3], to: IPEndpoint("127.0.0.1:53")!)
        #expect(client.receive()?.bytes == [1, 2, 3])
        #expect(server.stop() == 0)
    }

    /// A change between two unprivileged users keeps capabilities (the kernel clears them only
    /// when leaving uid 0), and none ever clears the inheritable or ambient ones: `--user` must.
    @Test("--user started without root (setpriv, systemd) drops every capability, inheritable and ambient too",
          arguments: [(["setuid", "setgid", "net_bind_service", "net_admin"], "daemon", "uid 1,"),
                      (["net_bind_service"], "nobody", "uid 65534,")])
    func userFromAnUnprivilegedStartDropsEverything(capabilities: [String], user: String, expected: String) throws {
        let namespace = try ScratchNamespace(prefix: "slprivu")
        let server = try Self.run(Self.unprivileged(capabilities, in: namespace.name, [
            SluiceExecutable.path, "udp-echo", "--listen", "127.0.0.1:53", "--user", user, "--duration", "60",
            "--stats-interval", "0"]))
        let line = try #require(server.waitForLine(containing: "running as"), "\(server.text)")
        #expect(line.contains(expected) && line.contains("capabilities: none"), "\(line)")
        let threads = Self.statusFields(of: server.pid)
        #expect(!threads.isEmpty)
        for thread in threads {
            for field in ["CapPrm", "CapEff", "CapInh", "CapAmb"] {
                #expect(thread[field].flatMap { UInt64($0, radix: 16) } == 0, "\(field): \(thread)")
            }
        }
        let client = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!) }
        client.send([4, 5], to: IPEndpoint("127.0.0.1:53")!)
        #expect(client.receive()?.bytes == [4, 5])
        #expect(server.stop() == 0)
    }

    @Test("udp-echo --backend xdp --user nobody keeps CAP_NET_ADMIN alone, serves, and still detaches its program")
    func userKeepsWhatXDPNeeds() throws {
        let topology = try TestTopology(.init(suffix: "pv\(getpid() % 100_000)"))
        defer { topology.destroy() }
        let server = try ChildProcess(sluice: [
            "udp-echo", "--backend", "xdp", "--dev", topology.serverInterface, "--netns", topology.serverNamespace,
            "--listen", "\(topology.serverIPv4):9000", "--user", "nobody", "--duration", "60", "--stats-interval", "0"])
        let line = try #require(server.waitForLine(containing: "running as"), "\(server.text)")
        #expect(line.contains("capabilities: CAP_NET_ADMIN"))
        for thread in Self.threads(of: server.pid) {
            #expect(thread.uid.hasPrefix("65534"), "\(thread)")
            #expect(thread.permitted == Self.mask([.netAdmin]) && thread.effective == Self.mask([.netAdmin]), "\(thread)")
        }
        try Self.echoThroughServer(topology)
        #expect(server.stop() == 0)
        #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)")
        let status = try ChildProcess(sluice: ["xdp", "status", "--netns", topology.serverNamespace])
        #expect(status.waitForExit() == 0)
        #expect(status.text.contains("no interface in this namespace has a sluice XDP program"), "\(status.text)")
    }

    @Test("each refusal names the capability the process lacks", arguments: [
        (["net_admin", "net_raw", "perfmon"], "xdp", "this process lacks CAP_BPF"),
        (["net_admin", "net_raw", "bpf"], "xdp", "this process lacks CAP_PERFMON"),
        (["net_admin", "bpf", "perfmon"], "xdp", "an AF_XDP socket needs CAP_NET_RAW; this process lacks CAP_NET_RAW"),
        ([], "socket", "a port below 1024 needs CAP_NET_BIND_SERVICE; this process lacks CAP_NET_BIND_SERVICE"),
    ])
    func namesTheMissingCapability(capabilities: [String], backend: String, expected: String) throws {
        let topology = try TestTopology(.init(suffix: "pc\(getpid() % 100_000)"))
        defer { topology.destroy() }
        let arguments = backend == "xdp"
            ? ["--backend", "xdp", "--dev", topology.serverInterface, "--listen", "\(topology.serverIPv4):9000"]
            : ["--listen", "\(topology.serverIPv4):53"]
        let server = try Self.run(Self.unprivileged(capabilities, in: topology.serverNamespace,
                                                    [SluiceExecutable.path, "udp-echo", "--duration", "5", "--stats-interval", "0"] + arguments))
        #expect(server.waitForExit(timeout: .seconds(20)) == 1)
        #expect(server.text.contains(expected), "\(server.text)")
        #expect(!server.text.contains("root"), "\(server.text)")
        let status = try ChildProcess(sluice: ["xdp", "status", "--netns", topology.serverNamespace])
        #expect(status.waitForExit() == 0)
        #expect(status.text.contains("no interface in this namespace has a sluice XDP program"), "nothing left behind: \(status.text)")
    }

    /// The unit's `KEY=` value.
    static func unit(_ name: String) throws -> [String: String] {
        let path = String(#filePath.split(separator: "/").dropLast(3).joined(separator: "/")).withLeadingSlash + "/Examples/systemd/" + name
        let text = try #require(readTextFile(path), "no \(path)")
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "=", maxSplits: 1)
            if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
        }
        #expect(values["DynamicUser"] == "yes")
        #expect(values["AmbientCapabilities"] == values["CapabilityBoundingSet"])
        return values
    }

    /// The unit's capabilities as setpriv names them (`CAP_NET_ADMIN` → `net_admin`).
    static func capabilities(of unit: [String: String]) -> [String] {
        (unit["AmbientCapabilities"] ?? "").split(separator: " ").map { $0.dropFirst(4).lowercased() }
    }

    @Test("Examples/systemd/sluice-dns.service, started under setpriv with only its capabilities, answers dig and serves /metrics")
    func dnsUnit() throws {
        guard access("/usr/bin/dig", X_OK) == 0, access("/usr/bin/curl", X_OK) == 0 else {
            print("skip: dig or curl not installed; the README's test command installs them")
            return
        }
        let unit = try Self.unit("sluice-dns.service")
        #expect(Self.capabilities(of: unit) == ["net_bind_service"])
        let zone = String(#filePath.split(separator: "/").dropLast(2).joined(separator: "/")).withLeadingSlash
            + "/SluiceDNSTests/Fixtures/example.test.zone"
        var command = try #require(unit["ExecStart"]).split(separator: " ").map(String.init)
        command[0] = SluiceExecutable.path
        command = command.map { $0 == "/etc/sluice/example.test.zone" ? zone : $0 }
        let namespace = try ScratchNamespace(prefix: "slunit")
        let server = try Self.run(Self.unprivileged(Self.capabilities(of: unit), in: namespace.name, command))
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        for thread in Self.threads(of: server.pid) {
            #expect(thread.uid.hasPrefix("65534"), "\(thread)")
            #expect(thread.effective == Self.mask([.netBindService]), "\(thread)")
        }
        let dig = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "dig", "+short", "@127.0.0.1", "example.test", "A"])
        #expect(dig.waitForExit(timeout: .seconds(10)) == 0)
        #expect(dig.text.contains("198.18.5.1"), "\(dig.text)")
        let tcp = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "dig", "+short", "+tcp", "@127.0.0.1", "example.test", "A"])
        #expect(tcp.waitForExit(timeout: .seconds(10)) == 0)
        #expect(tcp.text.contains("198.18.5.1"), "\(tcp.text)")
        let metrics = try MetricsCommandTests.scrape("http://127.0.0.1:9464/metrics", in: namespace.name,
                                                     until: "sluice_service_responses_total", reaches: 1)
        #expect(MetricsCommandTests.sum(metrics, "sluice_service_responses_total") == 1)
        #expect(server.stop() == 0)
    }

    @Test("Examples/systemd/sluice-xdp-echo.service, started under setpriv with only its capabilities, echoes over AF_XDP")
    func xdpUnit() throws {
        let unit = try Self.unit("sluice-xdp-echo.service")
        #expect(Self.capabilities(of: unit) == ["net_admin", "net_raw", "bpf", "perfmon", "ipc_lock"])
        let topology = try TestTopology(.init(suffix: "px\(getpid() % 100_000)"))
        defer { topology.destroy() }
        var command = try #require(unit["ExecStart"]).split(separator: " ").map(String.init)
        command[0] = SluiceExecutable.path
        command = command.map { $0 == "eth0" ? topology.serverInterface : $0 }
        let server = try Self.run(Self.unprivileged(Self.capabilities(of: unit), in: topology.serverNamespace, command))
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        for thread in Self.threads(of: server.pid) {
            #expect(thread.uid.hasPrefix("65534"), "\(thread)")
        }
        try Self.echoThroughServer(topology)
        #expect(server.stop() == 0)
        #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)")
        let status = try ChildProcess(sluice: ["xdp", "status", "--netns", topology.serverNamespace])
        #expect(status.waitForExit() == 0)
        #expect(status.text.contains("no interface in this namespace has a sluice XDP program"), "detached at the end: \(status.text)")
    }

    /// Without CAP_SYS_ADMIN a program another process loaded cannot be opened, so the program a
    /// killed instance left looks like anyone's: the restart must refuse in one line (not replace
    /// it), `xdp status` must not say "nothing", and the unit's `ExecStopPost` (as root) clears it.
    @Test("a killed instance of the XDP unit: the restart refuses in one line, the unit's ExecStopPost clears it, the next start serves")
    func xdpUnitAfterAKill() throws {
        let unit = try Self.unit("sluice-xdp-echo.service")
        let topology = try TestTopology(.init(suffix: "pk\(getpid() % 100_000)"))
        defer { topology.destroy() }
        var command = try #require(unit["ExecStart"]).split(separator: " ").map(String.init)
        command[0] = SluiceExecutable.path
        command = command.map { $0 == "eth0" ? topology.serverInterface : $0 }
        let capabilities = Self.capabilities(of: unit)
        let first = try Self.run(Self.unprivileged(capabilities, in: topology.serverNamespace, command))
        try #require(first.waitForLine(containing: "backend on") != nil, "\(first.text)")
        _ = first.stop(signal: SIGKILL)

        let refused = try Self.run(Self.unprivileged(capabilities, in: topology.serverNamespace, command))
        #expect(refused.waitForExit(timeout: .seconds(20)) == 1)
        #expect(refused.text.contains("cannot identify (opening a program another process loaded needs CAP_SYS_ADMIN"),
                "\(refused.text)")
        let status = try Self.run(Self.unprivileged(capabilities, in: topology.serverNamespace, [
            SluiceExecutable.path, "xdp", "status", "--dev", topology.serverInterface]))
        #expect(status.waitForExit() == 1)
        #expect(status.text.contains("that this process cannot identify"), "\(status.text)")

        // ExecStopPost=-+COMMAND: systemd runs COMMAND with full privileges, its failure ignored.
        var stopPost = try #require(unit["ExecStopPost"]).split(separator: " ").map(String.init)
        #expect(stopPost[0] == "-+/usr/local/bin/sluice")
        stopPost = stopPost.dropFirst().map { $0 == "eth0" ? topology.serverInterface : $0 }
        let unload = try ChildProcess(sluice: stopPost + ["--netns", topology.serverNamespace])
        #expect(unload.waitForExit() == 0)
        #expect(unload.text.contains("detached program"), "\(unload.text)")

        let restarted = try Self.run(Self.unprivileged(capabilities, in: topology.serverNamespace, command))
        try #require(restarted.waitForLine(containing: "backend on") != nil, "\(restarted.text)")
        try Self.echoThroughServer(topology)
        #expect(restarted.stop() == 0)
    }
}
