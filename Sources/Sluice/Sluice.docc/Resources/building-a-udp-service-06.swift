#if canImport(Glibc)
import Glibc
#endif
import Logging
import Sluice

/// Answers every datagram with its payload in upper case and an exclamation mark, in place in its frame.
struct Shouter: UDPService {
    var shouted: UInt64 = 0
    var empty: UInt64 = 0

    mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction {
        guard datagram.payloadLength > 0 else {
            empty &+= 1
            return .drop                                // nothing to shout: the frame goes back to the pool
        }
        for index in datagram.payload.indices where (97...122).contains(datagram.payload[index]) {
            datagram.payload[index] -= 32               // a view of the frame's bytes: the reply is written here
        }
        if datagram.payloadLength < datagram.payloadCapacity {
            datagram.payloadLength += 1                 // room left in the frame: the reply grows by one byte
            datagram.payload[datagram.payloadLength - 1] = UInt8(ascii: "!")
        }
        shouted &+= 1
        return .reply
    }

    /// The service's own counts, for the server's summary and metrics.
    var counterFields: [(String, UInt64)] { [("shouted", shouted), ("empty", empty)] }
}

let arguments = Array(CommandLine.arguments.dropFirst())
let backend = arguments.first ?? "socket"
let listen = arguments.count > 1 ? arguments[1] : "[::]:9000"
guard let endpoint = IPEndpoint(listen) else { fatalError("not an address and port: \(listen)") }

LoggingSystem.bootstrap(StreamLogHandler.standardOutput)       // where this program's own lines go
let logger = Logger(label: "shout")                            // the library logs fallbacks here; it never prints
var configuration = UDPServerConfiguration(listen: endpoint)
configuration.backend = Backend(rawValue: backend)             // a name in UDPBackendRegistry: socket, uring, xdp, ...
configuration.workers = 2                                      // one port, pool and service per worker
configuration.segmentationOffload = true                       // UDP GSO on send (socket and io_uring)
configuration.logger = logger
if configuration.backend == .xdp {
    configuration.xdp = XDPBackendConfiguration(interface: arguments.count > 2 ? arguments[2] : "eth0")
}

do throws(RuntimeError) {
    let server = try UDPServer(configuration: configuration) { _ in Shouter() }
    logger.info("shouting on \(server.boundEndpoint) over \(configuration.backend)")
    try server.runBlocking(for: .seconds(60), progressInterval: .seconds(1)) { line in logger.info("\(line)") }
    logger.info("\(server.summary())")
} catch {
    logger.error("shout: \(error)")                                  // what failed, and what the system needs for it
    if let cause = error.cause { logger.error("shout: \(cause.operation): errno \(cause.code)") }
    exit(1)
}
