// A host application of the library, for the test that checks the library never writes to
// stdout or stderr: it serves UDP echo on the backend named on the command line, drives it with
// a few hundred datagrams, stops it, and exits 0 having written nothing itself unless a step
// failed. Everything the library might say goes nowhere (no logger given), so any byte in the
// captured output is the library writing on its own (or libbpf and libxdp, which print to stderr
// unless their messages are taken over).
#if canImport(Glibc)
import Glibc
#endif
import Sluice
import SluiceTestSupport

func fail(_ message: String) -> Never {
    var line = "probe: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(2)
}

/// Sends `count` datagrams to `target` from a socket bound to `from` and counts the echoes.
func drive(from: IPEndpoint, to target: IPEndpoint, count: Int) -> Int {
    let socket = KernelUDPSocket(bind: from, receiveTimeout: .milliseconds(500))
    var echoed = 0
    for index in 0..<count {
        let payload = Array("datagram \(index)".utf8)
        _ = socket.send(payload, to: target)
        if let reply = socket.receive(), reply.bytes == payload { echoed += 1 }
    }
    return echoed
}

func serve(_ configuration: UDPServerConfiguration, namespace: String? = nil,
           client: @Sendable (IPEndpoint) throws -> Int) throws {
    // Workers (and the XDP program's interface lookups) live in the namespace the server starts in.
    func inServerNamespace<T: Sendable>(_ body: @Sendable () throws -> T) throws -> T {
        try namespace.map { try TestTopology.run(inNamespace: $0, body) } ?? body()
    }
    let server = try inServerNamespace { () throws -> UDPServer<UDPEchoService> in
        try UDPServer(configuration: configuration) { _ in UDPEchoService() }
    }
    let echoed = try client(server.boundEndpoint)
    try inServerNamespace { server.stop() }
    _ = server.summary()
    guard echoed >= 190 else { fail("only \(echoed) of 200 datagrams echoed") }
    guard server.workerReports.allSatisfy({ $0.frames.isBalanced }) else { fail("frames unaccounted for") }
}

let arguments = CommandLine.arguments.dropFirst()
guard let backend = arguments.first else { fail("usage: SluiceSilenceProbe socket|uring|xdp") }
do {
    switch backend {
    case "socket", "uring":
        var configuration = UDPServerConfiguration(listen: IPEndpoint("127.0.0.1:0")!)
        configuration.backend = Backend(rawValue: backend)
        configuration.handlesSignals = false
        configuration.segmentationOffload = true
        try serve(configuration) { target in drive(from: IPEndpoint("127.0.0.1:0")!, to: target, count: 200) }
    case "xdp":
        let topology = try TestTopology(.init(suffix: "q\(getpid())"))
        defer { topology.destroy() }
        var configuration = UDPServerConfiguration(listen: IPEndpoint(address: .v4(topology.serverIPv4), port: 9000))
        configuration.backend = .xdp
        configuration.handlesSignals = false
        configuration.xdp = XDPBackendConfiguration(interface: topology.serverInterface)
        try serve(configuration, namespace: topology.serverNamespace) { target in
            try TestTopology.run(inNamespace: topology.clientNamespace) {
                drive(from: IPEndpoint(address: .v4(topology.clientIPv4), port: 0), to: target, count: 200)
            }
        }
    default:
        fail("no backend \(backend)")
    }
} catch {
    fail("\(error)")
}
