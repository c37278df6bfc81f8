#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CSluiceSystem
import Sluice
import SluiceURing

/// The backends `tcp-echo` runs on.
enum TCPBackend: String, ExpressibleByArgument, CaseIterable {
    /// One io_uring: multishot accept and recv into provided buffers, sends from the same frames.
    case uring
}

/// How the io_uring is set up, as the command line names it.
enum RingMode: String, ExpressibleByArgument, CaseIterable {
    case plain, sqpoll, deferTaskrun = "defer-taskrun", coop

    var mode: URingMode {
        switch self {
        case .plain: .plain
        case .sqpoll: .submissionPolling(idle: .milliseconds(100), cpu: nil)
        case .deferTaskrun: .deferTaskRun
        case .coop: .cooperative
        }
    }
}

struct TCPEcho: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tcp-echo",
        abstract: "Serve TCP echo: every byte goes back; after the peer shuts its write side, finish sending and close.")

    @Option(help: "Backend: \(TCPBackend.allCases.map(\.rawValue).joined(separator: ", ")).")
    var backend: TCPBackend = .uring

    @Option(help: "Address and port to listen on: 127.0.0.1:7000, [::]:7000 (dual-stack), port 0 for any.")
    var listen: IPEndpoint

    @Option(help: "Ring mode: \(RingMode.allCases.map(\.rawValue).joined(separator: ", ")).")
    var ringMode: RingMode = .plain

    @Option(parsing: .unconditional, help: "Most connections at once; at the limit the connections idle longest (a sixteenth of --idle-timeout at least) are closed to make room.")
    var maxConnections: Int = 256

    @Option(parsing: .unconditional, help: "Sends of at least this many bytes use SEND_ZC (0: never). For NICs: on loopback and veth zero copy is slower, and stalls peers with small receive buffers.")
    var zeroCopyThreshold: Int = 0

    @Option(parsing: .unconditional, help: "Close a connection that moves no data either way for this many seconds (0: never).")
    var idleTimeout: Double = 60

    @Option(parsing: .unconditional, help: "Frames one connection may hold for sending before its receiving pauses (its fair share when many are open).")
    var connectionBudget: Int = 32

    @Option(parsing: .unconditional, help: "Stop by itself after this many seconds (default: run until SIGINT/SIGTERM).")
    var duration: Double?

    @Option(help: "Enter this network namespace (/run/netns/NAME) first, with setns().")
    var netns: String?

    @OptionGroup var report: ReportOptions

    @OptionGroup var privileges: PrivilegeOptions

    func validate() throws {
        try checkStreamAddress(listen, "--listen")
        if let duration { try checkSeconds(duration, "--duration", in: 0.001...31_536_000) }
        try checkSeconds(idleTimeout, "--idle-timeout", in: 0.01...31_536_000, orNever: true)
        guard (2...512).contains(connectionBudget) else { throw ValidationError("--connection-budget must be 2 to 512") }
        guard (1..<65536).contains(maxConnections) else { throw ValidationError("--max-connections must be 1 to 65535") }
        guard zeroCopyThreshold >= 0 else { throw ValidationError("--zero-copy-threshold must be 0 or more") }
    }

    func run() throws {
        sluice_line_buffer_stdout()
        if let netns { try NetworkNamespace.enter(netns) }
        var configuration = TCPEngineConfiguration(mode: ringMode.mode)
        configuration.logger = .terminal
        configuration.maximumConnections = maxConnections + 1   // the listener takes a slot
        configuration.zeroCopyThreshold = zeroCopyThreshold > 0 ? zeroCopyThreshold : nil
        configuration.idleTimeout = idleTimeout > 0 ? Duration(checkedSeconds: idleTimeout) : nil
        configuration.maximumQueuedPerConnection = connectionBudget
        // Peers that connect and stay silent must not lock every other one out until their idle
        // timeout: at the limit, the idlest make room (as tls serve and dns serve do).
        configuration.closesIdlestWhenFull = true
        let say = report.say
        let dropper = DropOnReady(privileges, command: "tcp-echo")
        do {
            try report.runStreamServer("tcp-echo", mode: "\(ringMode.rawValue) ring") { metrics in
                let result = try TCPEchoServer.run(
                    listen: listen, configuration: configuration, metrics: metrics,
                    ready: { endpoint in
                        say("sluice tcp-echo: \(backend.rawValue) backend (\(ringMode.rawValue)) listening on \(endpoint)")
                        dropper.drop(say: say)
                    },
                    shouldStop: dropper.stopping(stopCondition(duration: duration, say: say)))
                try dropper.check()
                let accounted = result.frames.isBalanced && result.operationsInFlight == 0
                return StreamServerOutcome(endpoint: result.endpoint, seconds: result.seconds, framesBalanced: result.frames.isBalanced,
                                           text: "\(result)", status: accounted ? 0 : 3)
            }
        } catch let error as SystemCallError {
            writeToStandardError("sluice tcp-echo: \(error.terminalDescription)\n")
            throw ExitCode(1)
        }
    }
}
