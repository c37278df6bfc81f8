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
let listen = arguments.first ?? "[::]:9000"
guard let endpoint = IPEndpoint(listen) else { fatalError("not an address and port: \(listen)") }

LoggingSystem.bootstrap(StreamLogHandler.standardOutput)       // where this program's own lines go
let logger = Logger(label: "shout")

var configuration = UDPServerConfiguration(listen: endpoint)   // kernel sockets unless told otherwise
configuration.workers = 2                                      // one port, pool and service per worker
let server = try UDPServer(configuration: configuration) { _ in Shouter() }
logger.info("shouting on \(server.boundEndpoint)")
try server.runBlocking(for: .seconds(60), progressInterval: .seconds(1)) { line in logger.info("\(line)") }   // or until SIGINT or SIGTERM
logger.info("\(server.summary())")
