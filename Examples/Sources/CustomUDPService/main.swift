// A custom UDP service over any backend, hosted by a swift-service-lifecycle ServiceGroup (as a
// Hummingbird or SwiftNIO application would host it next to its HTTP server):
//
//   swift run custom-udp-service                          # kernel sockets on [::]:9000 (dual-stack)
//   swift run custom-udp-service uring 127.0.0.1:9000     # io_uring
//   swift run custom-udp-service xdp 198.18.0.1:9000 eth0 # AF_XDP on eth0's queue 0 (root)
//
// It serves until SIGINT or SIGTERM, then prints a summary.
#if canImport(Glibc)
import Glibc
#endif
import Logging
import ServiceLifecycle
import Sluice

// README: begin service
/// Answers every datagram with its payload reversed, in place in its frame.
struct Reverser: UDPService {
    mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction {
        var payload = datagram.payload          // a view of the frame's bytes: reversing it rewrites them
        payload.reverse()
        return .reply                           // or .drop, or .send(to: someEndpoint)
    }
}
// README: end

let arguments = Array(CommandLine.arguments.dropFirst())
let backend = arguments.first ?? "socket"
let listen = arguments.count > 1 ? arguments[1] : "[::]:9000"
guard let endpoint = IPEndpoint(listen) else {
    Logger(label: "custom-udp-service").error("usage: custom-udp-service [BACKEND [ADDRESS:PORT [INTERFACE]]]: '\(listen)' is not an address and port")
    exit(2)
}

// README: begin server
let logger = Logger(label: "reverser")               // the library logs fallbacks here; it never prints
var configuration = UDPServerConfiguration(listen: endpoint)
configuration.backend = Backend(rawValue: backend)   // a name in UDPBackendRegistry: socket, uring, xdp, ...
configuration.workers = 2                            // one port, pool and service per worker
configuration.segmentationOffload = true             // UDP GSO on send (socket and io_uring)
configuration.logger = logger
configuration.handlesSignals = false                 // the service group owns SIGINT and SIGTERM
if configuration.backend == .xdp {
    configuration.xdp = XDPBackendConfiguration(interface: arguments.count > 2 ? arguments[2] : "eth0")
}
do {
    let server = try UDPServer(configuration: configuration) { _ in Reverser() }
    let group = ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    try await group.run()                            // serves until a signal; then the workers stop
    print(server.summary())
} catch {
    logger.error("\(error)")                         // what failed, the errno, and what to do about it
    exit(1)
}
// README: end
