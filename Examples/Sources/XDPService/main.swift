// A service on AF_XDP with a port of its own: the XDP program (built into Sluice), a UMEM over
// a frame pool, one XSK on one queue, and the worker loop, put together by hand.
//
//   swift run xdp-service eth0 9000 [SECONDS]   # root, or CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON, CAP_NET_RAW, CAP_IPC_LOCK
//
// Every UDP datagram to port 9000 arriving on queue 0 is answered with its payload in upper case;
// everything else (ARP, ping, other ports) still reaches the kernel. It stops after SECONDS
// (default 10) or at SIGINT or SIGTERM, and leaves the interface as it found it, also when a
// step fails.
#if canImport(Glibc)
import Glibc
#endif
import Logging
import Sluice

/// Upper-cases ASCII letters in place and sends the datagram back.
struct Shouter: UDPService {
    mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction {
        for index in datagram.payload.indices where (97...122).contains(datagram.payload[index]) {
            datagram.payload[index] -= 32
        }
        return .reply
    }
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.count >= 2, let servicePort = UInt16(arguments[1]), servicePort > 0,
      let seconds = arguments.count > 2 ? Int(arguments[2]) : 10, seconds > 0 else {
    Logger(label: "xdp-service").error("usage: xdp-service INTERFACE PORT [SECONDS]")
    exit(2)
}
let interface = arguments[0]

// README: begin xdp
/// Answers UDP to `servicePort` on queue 0 of `interface` for `seconds`, or until a stopping
/// signal; what it added to the interface goes again however it ends.
func serve(interface: String, servicePort: UInt16, seconds: Int) throws {
    let signals = SignalWaiter(SignalWaiter.stopping)                   // blocked here and in threads started later
    let program = try XDPProgram.attach(to: interface, mode: .native)   // generic if the driver refuses native
    defer { if !program.wasAlreadyAttached { try? program.detach() } }  // on the way out, thrown or not
    try program.setPort(servicePort)                                    // steer this UDP port into the XSKs
    defer { try? program.setPort(servicePort, enabled: false) }
    let pool = try FramePool(frameCount: 4096, frameSize: 2048)
    let umem = try XSKUmem(pool: pool)
    var port = try XDPPort(configuration: XDPPortConfiguration(interface: interface, queue: 0), umem: umem, pool: pool)
    try program.insertSocket(port.descriptor, queue: 0)
    defer { try? program.removeSocket(queue: 0) }
    var stage = UDPStage(service: Shouter(), format: port.format)
    let state = WorkerState(index: 0)
    let timer = try WorkerThread(name: "timer") {
        _ = signals.wait(for: .seconds(seconds))                        // SIGINT, SIGTERM, ... or the time
        state.requestStop()
    }
    let tally = try WorkerLoop.run(port: &port, stage: &stage, pool: pool, state: state,   // until state.requestStop(),
                                   quiesce: { try? program.removeSocket(queue: 0) })     // then what the ring holds
    timer.join()
    print("served \(port.counters.receivedPackets) datagrams in \(program.mode) mode; \(port.statistics); \(tally)")
}
// README: end

do {
    try serve(interface: interface, servicePort: servicePort, seconds: seconds)
} catch {
    Logger(label: "xdp-service").error("\(error)")
    exit(1)
}
