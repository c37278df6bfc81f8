#if canImport(Glibc)
import Glibc
#endif
import SluicePackets
import SluiceTestSupport
import Testing

/// Faults under `sluice udp-echo` on the kernel-socket backends (socket, io_uring), run for real:
/// the interface with the listen address deleted and made again, and signals under full load.
@Suite(.serialized) struct SocketBackendFaultTests {
    static let backends = ["socket", "uring"]

    /// Runs `ip ARGUMENTS` and expects it to succeed.
    func ip(_ arguments: [String]) throws {
        let command = try ChildProcess("/usr/sbin/ip", arguments)
        let status = command.waitForExit()
        #expect(status == 0, "ip \(arguments.joined(separator: " ")): \(command.text)")
    }

    /// A veth pair in `namespace`, `address`/32 on one end (this kernel has no dummy device).
    func addInterface(_ namespace: String, address: String) throws {
        try ip(["-n", namespace, "link", "add", "sfault0", "type", "veth", "peer", "name", "sfault1"])
        try ip(["-n", namespace, "addr", "add", "\(address)/32", "dev", "sfault0"])
        try ip(["-n", namespace, "link", "set", "sfault0", "up"])
        try ip(["-n", namespace, "link", "set", "sfault1", "up"])
    }

    /// A kernel socket keeps its bound address when the interface holding it goes away (the
    /// kernel reports nothing to it), so the fault is waited out as the kernel does: the worker
    /// keeps running, and answers again once the address is back.
    @Test(arguments: backends)
    func theInterfaceDeletedUnderARunningWorkerIsWaitedOut(backend: String) throws {
        let namespace = try ScratchNamespace(prefix: "sbf")
        let address = "198.18.77.1"
        try addInterface(namespace.name, address: address)
        let server = try ChildProcess(sluice: [
            "udp-echo", "--backend", backend, "--netns", namespace.name, "--listen", "\(address):7100",
            "--duration", "60", "--stats-interval", "0"])
        #expect(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        let client = try withNetworkNamespace(namespace.name) {
            KernelUDPSocket(bind: IPEndpoint("0.0.0.0:0")!, receiveTimeout: .milliseconds(300))
        }
        let target = IPEndpoint("\(address):7100")!
        #expect(client.echoes([1], to: target), "\(server.text)")
        try ip(["-n", namespace.name, "link", "del", "sfault0"])
        usleep(1_500_000)
        #expect(server.isRunning, "the address going away is not a failure: \(server.text)")
        try addInterface(namespace.name, address: address)
        #expect(client.echoes([2], to: target), "echo after the address came back: \(server.text)")
        #expect(server.stop() == 0, "\(server.text)")
        #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)")
    }

    /// SIGINT and SIGTERM while `udp-client` keeps the worker busy: a clean stop within the
    /// timeout, exit status 0, the summary, and every frame back.
    @Test(arguments: backends, [SIGINT, SIGTERM])
    func stopsCleanlyUnderFullLoad(backend: String, signal: Int32) throws {
        let server = try ChildProcess(sluice: [
            "udp-echo", "--backend", backend, "--listen", "127.0.0.1:0", "--duration", "60", "--stats-interval", "0"])
        let line = try #require(server.waitForLine(containing: "backend on"), "\(server.text)")
        let target = try #require(UDPEchoTests.endpoint(in: line))
        let load = try ChildProcess(sluice: [
            "udp-client", "--target", target.description, "--window", "512", "--size", "200", "--duration", "20"])
        defer { _ = load.stop(signal: SIGKILL) }
        usleep(1_500_000)
        #expect(load.isRunning, "\(load.text)")
        #expect(server.stop(signal: signal, timeout: .seconds(10)) == 0, "\(server.text)")
        #expect(server.text.contains(signal == SIGINT ? "SIGINT received" : "SIGTERM received"), "\(server.text)")
        #expect((datagramsReceived(in: server.text) ?? 0) > 1000, "not under load: \(server.text)")
        #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)")
    }
}
